"""The storage service as it runs (``run_storage``) on real NATS: folder events provision, clone
and purge directories on its volume, idempotently under redelivery, and each step is reported
once; a folder in the trash refuses every token (issued before the trash too) until restored; its
data plane answers and its key is created 0600."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid

import httpx
import msgspec
import pytest
from nats.js import JetStreamContext

from contracts.envelope import Event, Metadata
from contracts.storage_token import mint_token
from contracts.subjects import REPORTS_STREAM
from contracts.storage_reports import decode_storage_report
from contracts.vfolder import OwnerKind, VFolderCreated, VFolderPurgeRequested, VFolderRestored, VFolderTrashed, new_folder_id
from services.common.settings import Settings
from services.storage.main import run_storage
from tests.support.publish import publish_events, service_tasks
from tests.support.waiting import async_wait_for

pytestmark = pytest.mark.asyncio

META = Metadata(actor="test", correlation_id="c")


def _envelope(folder: str, version: int) -> dict:
    return {"event_id": uuid.uuid4(), "originator_id": folder, "originator_version": version,
            "timestamp": dt.datetime.now(dt.UTC), "metadata": META}


def created(folder: str, *, volume: str = "local", clone_of: str | None = None) -> VFolderCreated:
    return VFolderCreated(**_envelope(folder, 1), name=folder[-6:], volume=volume, owner_kind=OwnerKind.USER,
                          owner="alice", domain="default", quota_scope="user:alice", clone_of=clone_of, by="alice")


def purge(folder: str, version: int = 2) -> VFolderPurgeRequested:
    return VFolderPurgeRequested(**_envelope(folder, version), by="alice")


class Reports:
    """Every storage report on the bus (a durable pull consumer of the test's own)."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js, self.seen, self.sub = js, [], None

    async def poll(self) -> list:
        if self.sub is None:
            self.sub = await self.js.pull_subscribe("rp.storage.>", durable="test-storage", stream=REPORTS_STREAM)
        try:
            for msg in await self.sub.fetch(50, timeout=0.2):
                self.seen.append(decode_storage_report(msg.data))
                await msg.ack()
        except Exception:  # noqa: BLE001 - a fetch timeout: nothing new
            pass
        return self.seen

    def of(self, kind: str, folder: str) -> list:
        return [r for r in self.seen if r.type_name() == kind and r.folder_id == folder]


async def test_folder_events_provision_clone_and_purge_once_each(tmp_path, js, nats_server):
    """Under the storage service's own bus identity: no permission it lacks is needed."""
    log = nats_server.data_dir / "nats-server.log"
    log_start = log.stat().st_size
    settings = Settings(nats_url=nats_server.url, nats_creds=str(nats_server.credentials("storage")), data_dir=tmp_path,
                        storage_volumes=f"local={tmp_path}/vol", storage_usage_interval=3600)
    root = tmp_path / "vol" / "folders"
    urls: list[str] = []
    source, clone, missing = new_folder_id(), new_folder_id(), new_folder_id()
    reports = Reports(js)
    async with service_tasks() as services:
        services.start("storage", lambda stop: run_storage(settings, stop, urls.append))
        await async_wait_for(lambda: urls, message="the storage service did not start")
        await publish_events(js, [created(source)], 1)
        await async_wait_for(lambda: (root / source).is_dir(), message="folder not provisioned")
        (root / source / "data.txt").write_text("hello")
        await publish_events(js, [created(clone, clone_of=source)], 2)
        await publish_events(js, [created(missing, clone_of=new_folder_id())], 3)
        await publish_events(js, [created(new_folder_id(), volume="elsewhere")], 4)
        await publish_events(js, [created(source)], 5, msg_id="again")  # a redelivery: nothing new
        await async_wait_for(lambda: (root / clone / "data.txt").exists(), message="clone not copied")

        async def settled() -> bool:
            await reports.poll()
            return bool(reports.of("folder_provisioned", clone) and reports.of("folder_provision_failed", missing))

        await async_wait_for(settled, message="provision reports missing")
        await publish_events(js, [purge(source)], 6)
        await publish_events(js, [purge(source)], 7, msg_id="again-purge")

        async def purged() -> bool:
            await reports.poll()
            return not (root / source).exists() and bool(reports.of("folder_purged", source))

        await async_wait_for(purged, message="folder not purged")
        key = tmp_path / "storage.key"
        assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes()) == 32
    assert (root / clone / "data.txt").read_text() == "hello"
    assert sorted(p.name for p in root.iterdir()) == [clone]
    assert len(reports.of("folder_provisioned", source)) == 1  # dedup by report id
    assert len(reports.of("folder_purged", source)) == 1
    assert "not on volume local" in reports.of("folder_provision_failed", missing)[0].reason
    assert not [r for r in reports.seen if r.volume != "local"]
    with open(log, "rb") as f:
        f.seek(log_start)
        assert b"Violation" not in f.read()


async def test_a_folder_in_the_trash_refuses_every_token_until_restored(tmp_path, js, nats_server):
    """Tokens issued before the trash included; its unfinished uploads are dropped."""
    settings = Settings(nats_url=nats_server.url, nats_creds=str(nats_server.credentials("storage")), data_dir=tmp_path,
                        storage_volumes=f"local={tmp_path}/vol", storage_usage_interval=3600)
    folder = new_folder_id()
    urls: list[str] = []
    async with service_tasks() as services, httpx.AsyncClient() as http:
        services.start("storage", lambda stop: run_storage(settings, stop, urls.append))
        await async_wait_for(lambda: urls, message="the storage service did not start")
        await publish_events(js, [created(folder)], 1)
        await async_wait_for(lambda: (tmp_path / "vol" / "folders" / folder).is_dir(), message="not provisioned")
        (tmp_path / "vol" / "folders" / folder / "a.txt").write_text("hello")
        key = (tmp_path / "storage.key").read_bytes()

        def token(path: str, op: str) -> str:
            return mint_token(key, folder=folder, volume="local", path=path, op=op, user="alice",  # type: ignore[arg-type]
                              now=time.time(), ttl=900, max_bytes=100, quota_scope="user:alice")[0]

        download, upload = token("a.txt", "download"), token("b.bin", "upload")
        started = await http.post(f"{urls[0]}/tus", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "10",
                                                             "Authorization": f"Bearer {upload}"})
        assert started.status_code == 201

        async def status() -> int:
            return (await http.get(f"{urls[0]}/download", params={"token": download})).status_code

        assert await status() == 200
        await publish_events(js, [_trashed(folder, 2)], 2)
        await async_wait_for(lambda: _is(status(), 403), message="a token of a trashed folder still works")
        refused = await http.get(f"{urls[0]}/download", params={"token": download})
        assert "in the trash" in refused.json()["error"]
        assert sorted(p.name for p in (tmp_path / "vol" / ".uploads").iterdir()) == []  # the upload dropped
        files = await http.get(f"{urls[0]}/files", params={"token": token("", "list")})
        assert files.status_code == 403  # a token issued after the trash neither

        await publish_events(js, [_restored(folder, 3)], 3)
        await async_wait_for(lambda: _is(status(), 200), message="a restored folder's token does not work")


async def _is(status, wanted: int) -> bool:  # type: ignore[no-untyped-def]
    return await status == wanted


def _trashed(folder: str, version: int) -> VFolderTrashed:
    return VFolderTrashed(**_envelope(folder, version), by="alice")


def _restored(folder: str, version: int) -> VFolderRestored:
    return VFolderRestored(**_envelope(folder, version), by="alice")
