"""The storage service's folder events on real NATS, with one clone held as a copy of tens of GB would
hold it (``HeldClones``: the real copy of real files, once released): another folder's creation does not
wait for it, at most ``LONG_JOBS_AT_ONCE`` clones copy at once, the source's trash and purge wait for the
clone that copies it (never a half-copied clone), a folder's own events are carried out in order, and a
clone that takes longer than the consumer's ack wait is neither delivered again nor dead-lettered, nor
is the purge queued behind it. Before, the folder events of a volume were carried out one at a time:
a tenant's `vfolder create` waited for every clone (and purge) fetched before it."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from contracts.subjects import DEADLETTER_STREAM, EVENTS_STREAM
from contracts.vfolder import VFolderTrashed, new_folder_id
from services.common import flow, settler
from services.common.lanes import Lanes
from services.common.settings import Settings
from services.storage.main import run_storage
from services.storage.provisioning import LONG_JOBS_AT_ONCE
from services.storage.volume import PosixVolume
from tests.integration.test_storage_service import Reports, _envelope, created, purge
from tests.support.publish import publish_events, service_tasks
from tests.support.waiting import async_wait_for

pytestmark = pytest.mark.asyncio

PATIENCE = 60.0
"""Seconds a held clone waits for its release at most (a failing test does not leave its thread behind)."""
ACK_WAIT = 2
"""The consumer's ack wait in the test of a clone that outlasts it (30 s in the service)."""


class HeldClones:
    """``PosixVolume.clone`` as the service calls it, the clones of the folders ``held`` kept waiting
    until ``release`` is set (a copy of a large source); ``started``: every clone begun, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *held: str) -> None:
        self.held, self.release = set(held), threading.Event()
        self.started: list[str] = []
        real_clone = PosixVolume.clone

        def clone(volume: PosixVolume, source_id: str, folder_id: str) -> None:
            self.started.append(folder_id)
            if folder_id in self.held:
                self.release.wait(PATIENCE)
            real_clone(volume, source_id, folder_id)

        monkeypatch.setattr(PosixVolume, "clone", clone)


@contextlib.asynccontextmanager
async def storage_service(tmp_path: Path, nats_server) -> AsyncIterator[Path]:  # type: ignore[no-untyped-def]
    """Runs the storage service with the volume ``local`` under ``tmp_path``; yields its folders' directory."""
    settings = Settings(nats_url=nats_server.url, nats_creds=str(nats_server.credentials("storage")), data_dir=tmp_path,
                        storage_volumes=f"local={tmp_path}/vol", storage_usage_interval=3600)
    urls: list[str] = []
    async with service_tasks() as services:
        services.start("storage", lambda stop: run_storage(settings, stop, urls.append))
        await async_wait_for(lambda: urls, message="the storage service did not start")
        yield tmp_path / "vol" / "folders"


def fill(folder: Path) -> dict[str, bytes]:
    """Writes a few real files (one in a subdirectory) into ``folder``; returns them by relative path."""
    files = {"a.txt": b"alpha", "data/b.bin": bytes(range(256)) * 64, "data/deeper/c.txt": b"gamma"}
    for path, data in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    return files


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def trashed(folder: str, version: int = 2) -> VFolderTrashed:
    return VFolderTrashed(**_envelope(folder, version), by="alice")


async def reported(reports: Reports, kind: str, folder: str) -> bool:
    await reports.poll()
    return bool(reports.of(kind, folder))


async def test_a_long_clone_holds_back_no_other_folders_creation(tmp_path, js, nats_server, monkeypatch):
    source, slow, quick = new_folder_id(), new_folder_id(), new_folder_id()
    clones = HeldClones(monkeypatch, slow)
    reports = Reports(js)
    async with storage_service(tmp_path, nats_server) as root:
        await publish_events(js, [created(source)], 1)
        await async_wait_for(lambda: (root / source).is_dir(), message="the source was not provisioned")
        files = fill(root / source)
        await publish_events(js, [created(slow, clone_of=source)], 2)
        try:
            await async_wait_for(lambda: slow in clones.started, message="the clone never began")
            await publish_events(js, [created(quick)], 3)
            await async_wait_for(lambda: reported(reports, "folder_provisioned", quick), timeout=10,
                                 message="a folder's creation waited for another folder's clone")
            assert (root / quick).is_dir() and not (root / slow).exists()  # the clone still copying
        finally:
            clones.release.set()
        await async_wait_for(lambda: reported(reports, "folder_provisioned", slow), message="the clone never ended")
    assert contents(root / slow) == files
    assert clones.started == [slow]


async def test_a_few_clones_copy_at_once_and_a_creation_passes_them_all(tmp_path, js, nats_server, monkeypatch):
    sources = [new_folder_id() for _ in range(LONG_JOBS_AT_ONCE + 1)]
    copies = [new_folder_id() for _ in sources]
    quick = new_folder_id()
    clones = HeldClones(monkeypatch, *copies)
    reports = Reports(js)
    async with storage_service(tmp_path, nats_server) as root:
        await publish_events(js, [created(source) for source in sources], len(sources))
        await async_wait_for(lambda: all((root / s).is_dir() for s in sources), message="sources not provisioned")
        for source in sources:
            fill(root / source)
        await publish_events(js, [created(c, clone_of=s) for c, s in zip(copies, sources, strict=True)],
                             2 * len(sources))
        try:
            await async_wait_for(lambda: len(clones.started) == LONG_JOBS_AT_ONCE, timeout=10,
                                 message="the clones of different sources were not copied at the same time")
            await publish_events(js, [created(quick)], 2 * len(sources) + 1)
            await async_wait_for(lambda: reported(reports, "folder_provisioned", quick), timeout=10,
                                 message="a folder's creation waited for the clones")
            assert len(clones.started) == LONG_JOBS_AT_ONCE, "more clones copied at once than the bound"
        finally:
            clones.release.set()
        for copy in copies:
            await async_wait_for(lambda: reported(reports, "folder_provisioned", copy),  # noqa: B023
                                 message="a clone never ended")
    assert sorted(clones.started) == sorted(copies)


async def test_a_source_is_trashed_and_purged_only_once_its_clone_is_copied(tmp_path, js, nats_server, monkeypatch):
    """A purge of the source while it is copied would leave a clone with part of its files, reported provisioned."""
    source, slow, quick = new_folder_id(), new_folder_id(), new_folder_id()
    clones = HeldClones(monkeypatch, slow)
    reports = Reports(js)
    async with storage_service(tmp_path, nats_server) as root:
        await publish_events(js, [created(source)], 1)
        await async_wait_for(lambda: (root / source).is_dir(), message="the source was not provisioned")
        files = fill(root / source)
        await publish_events(js, [created(slow, clone_of=source)], 2)
        try:
            await async_wait_for(lambda: slow in clones.started, message="the clone never began")
            await publish_events(js, [trashed(source), purge(source, 3), created(quick)], 5)
            await async_wait_for(lambda: reported(reports, "folder_provisioned", quick),
                                 message="a folder's creation waited for another folder's clone")
            assert contents(root / source) == files, "the source was purged while it was being copied"
        finally:
            clones.release.set()
        await async_wait_for(lambda: reported(reports, "folder_purged", source), message="the source was not purged")
    assert contents(root / slow) == files
    assert sorted(p.name for p in root.iterdir()) == sorted([slow, quick])


async def test_the_events_of_one_folder_fetched_together_are_carried_out_in_order(tmp_path, js, nats_server):
    folder, other = new_folder_id(), new_folder_id()
    reports = Reports(js)
    await publish_events(js, [created(folder), trashed(folder), purge(folder, 3), created(other)], 4)  # one fetch
    async with storage_service(tmp_path, nats_server) as root:
        await async_wait_for(lambda: reported(reports, "folder_purged", folder), message="the folder was not purged")
        await async_wait_for(lambda: reported(reports, "folder_provisioned", other), message="not provisioned")
    assert reports.of("folder_provisioned", folder), "the folder was purged before it was created"
    assert sorted(p.name for p in root.iterdir()) == [other]


@pytest.fixture
def short_ack_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """The consumer's ack wait ``ACK_WAIT`` seconds; held messages kept alive four times as often."""
    keep_alive = ACK_WAIT / 4
    monkeypatch.setattr(flow, "ACK_WAIT", ACK_WAIT)
    monkeypatch.setattr(settler, "KEEP_ALIVE", keep_alive)
    monkeypatch.setattr(flow, "Lanes", functools.partial(Lanes, keep_alive=keep_alive))


async def test_a_clone_longer_than_the_ack_wait_is_delivered_once_with_the_purge_queued_behind_it(
    tmp_path, js: JetStreamContext, nats_server, monkeypatch, short_ack_wait,
):
    source, slow = new_folder_id(), new_folder_id()
    clones = HeldClones(monkeypatch, slow)
    reports = Reports(js)
    async with storage_service(tmp_path, nats_server) as root:
        await publish_events(js, [created(source)], 1)
        await async_wait_for(lambda: (root / source).is_dir(), message="the source was not provisioned")
        files = fill(root / source)
        await publish_events(js, [created(slow, clone_of=source)], 2)
        try:
            await async_wait_for(lambda: slow in clones.started, message="the clone never began")
            await publish_events(js, [trashed(source), purge(source, 3)], 4)  # queued behind the clone

            async def redelivered() -> bool:
                return (await js.consumer_info(EVENTS_STREAM, "storage-local")).num_redelivered > 0

            with pytest.raises(AssertionError):  # 3 ack waits pass with the clone held: nothing is redelivered
                await async_wait_for(redelivered, timeout=3 * ACK_WAIT, interval=0.2)
            assert (root / source).is_dir()
        finally:
            clones.release.set()
        await async_wait_for(lambda: reported(reports, "folder_purged", source), message="the source was not purged")
        info = await js.consumer_info(EVENTS_STREAM, "storage-local")
        assert info.num_redelivered == 0 and info.num_ack_pending == 0
    assert clones.started == [slow], "the clone was copied twice"
    assert contents(root / slow) == files
    assert len(reports.of("folder_provisioned", slow)) == 1
    assert (await js.stream_info(DEADLETTER_STREAM)).state.messages == 0
