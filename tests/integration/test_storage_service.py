"""The storage service as it runs (``run_storage``) on real NATS: folder events provision, clone
and purge directories on its volume, idempotently under redelivery, and each step is reported
once; its data plane answers and its key is created 0600."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import msgspec
import pytest
from nats.js import JetStreamContext

from contracts.envelope import Event, Metadata
from contracts.subjects import REPORTS_STREAM
from contracts.storage_reports import decode_storage_report
from contracts.vfolder import OwnerKind, VFolderCreated, VFolderPurgeRequested, new_folder_id
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
