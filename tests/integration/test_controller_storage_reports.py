"""The controller turns storage reports into folder events, on real NATS and PostgreSQL: a folder
is provisioned by its report; the same report again (past the stream's deduplication, another
message id) records nothing; a report sent on another volume's subject, or about an unknown
folder, is dead-lettered, and replayed (``berth dlq replay``) once its cause is dealt with."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest
from nats.js import JetStreamContext

from contracts.subjects import DEADLETTER_STREAM, REPORTS_STREAM, dead_letter_subject, storage_report_subject
from contracts.storage_reports import (
    FolderProvisionedReport,
    StorageReport,
    UsageMeasuredReport,
    encode_storage_report,
)
from contracts.vfolder import VFolderStatus, new_folder_id
from domain.vfolder.decide import NewFolder
from services.application.context import make_context
from services.application.vfolders import VFolders
from services.common.settings import Settings
from services.controller.main import run_controller
from services.gateway.deadletters import queue
from services.supervisor.embedded import NatsServer
from services.gateway.auth.keypairs import create_keypair, ensure_admin_keypair
from tests.support.gateway import create_user
from tests.support.publish import ServiceTasks, service_tasks
from tests.support.waiting import async_wait_for


@pytest.fixture
async def controller(js: JetStreamContext, nats_server: NatsServer, pg_dsn: str) -> AsyncIterator[ServiceTasks]:
    """The controller under its own bus identity (least privilege: it must still run this consumer)."""
    settings = Settings(nats_url=nats_server.url, nats_creds=str(nats_server.credentials("controller")), pg_dsn=pg_dsn,
                        heartbeat_interval=0.1, heartbeat_timeout=60.0)
    async with service_tasks() as tasks:
        tasks.start("controller", lambda stop: run_controller(settings, stop))
        yield tasks


@pytest.fixture
def vfolders(pg_dsn: str) -> AsyncIterator[VFolders]:
    ensure_admin_keypair(pg_dsn)
    create_user(pg_dsn, "alice")
    app = VFolders(pg_dsn)
    yield app
    app.close()


async def publish(js: JetStreamContext, report: StorageReport, *, volume: str | None = None,
                  msg_id: str | None = None) -> None:
    subject = storage_report_subject(volume or report.volume, report.type_name())
    await js.publish(subject, encode_storage_report(report), headers={"Nats-Msg-Id": msg_id or report.report_id})


async def drained(js: JetStreamContext) -> bool:
    return (await js.stream_info(REPORTS_STREAM)).state.messages == 0


async def dead_letters(js: JetStreamContext) -> int:
    info = await js.stream_info(DEADLETTER_STREAM, subjects_filter=dead_letter_subject("controller-storage"))
    return sum((info.state.subjects or {}).values())


def report(cls: type[StorageReport], folder_id: str, volume: str = "local", **fields: object) -> StorageReport:
    return cls(report_id=uuid.uuid4().hex, volume=volume, folder_id=folder_id, observed_at=dt.datetime.now(dt.UTC),
               **fields)


async def test_storage_reports_become_folder_events_once(
        js: JetStreamContext, controller: ServiceTasks, vfolders: VFolders, pg_dsn: str) -> None:
    key, _ = create_keypair(pg_dsn, "alice")
    actor = vfolders.actor(key)
    request = NewFolder(name="data", volume="local", owner_kind="user", owner="alice", domain="default")
    folder_id, _ = await asyncio.to_thread(vfolders.create, actor, request, make_context(key), owned=0)

    provisioned = report(FolderProvisionedReport, folder_id)
    await publish(js, provisioned)

    async def ready() -> bool:
        state = await asyncio.to_thread(vfolders.get, folder_id)
        return state is not None and state.status is VFolderStatus.READY

    await async_wait_for(ready, timeout=20, message="the folder was not provisioned")
    usage = report(UsageMeasuredReport, folder_id, bytes=7, files=1)
    await publish(js, usage)
    await publish(js, usage, msg_id="redelivered-after-the-dedup-window")
    await publish(js, provisioned, msg_id="again")
    await async_wait_for(lambda: drained(js), timeout=20, message="reports were not consumed")
    history = [type(e).type_name() for e in await asyncio.to_thread(vfolders.load, folder_id)]
    assert history == ["vfolder.created", "vfolder.provisioned", "vfolder.usage_measured"]

    await publish(js, report(FolderProvisionedReport, folder_id, volume="other"), volume="elsewhere")
    await publish(js, report(FolderProvisionedReport, "vfolder_" + "0" * 32))
    await publish(js, report(FolderProvisionedReport, folder_id, volume="other"))  # a folder of another volume
    await async_wait_for(lambda: drained(js), timeout=20, message="bad reports were not settled")
    await async_wait_for(lambda: _at_least(dead_letters(js), 3), timeout=20, message="bad reports not dead-lettered")
    assert len(await asyncio.to_thread(vfolders.load, folder_id)) == 3
    controller.check()


async def _at_least(count: object, n: int) -> bool:
    return await count >= n  # type: ignore[misc,operator]


async def test_a_dead_lettered_storage_report_is_replayed_once_its_cause_is_dealt_with(
        js: JetStreamContext, controller: ServiceTasks, vfolders: VFolders, pg_dsn: str) -> None:
    key, _ = create_keypair(pg_dsn, "alice")
    folder_id = new_folder_id()
    await publish(js, report(FolderProvisionedReport, folder_id))  # a folder the store does not know (yet)
    await async_wait_for(lambda: _at_least(dead_letters(js), 1), timeout=20, message="not dead-lettered")
    request = NewFolder(name="late", volume="local", owner_kind="user", owner="alice", domain="default")
    await asyncio.to_thread(vfolders.create, vfolders.actor(key), request, make_context(key), owned=0,
                            folder_id=folder_id)
    (letter,) = await queue.entries(js, "controller-storage")
    await queue.replay(js, letter)

    async def ready() -> bool:
        state = await asyncio.to_thread(vfolders.get, folder_id)
        return state is not None and state.status is VFolderStatus.READY

    await async_wait_for(ready, timeout=20, message="the replayed report was not applied")
    assert await dead_letters(js) == 0
    controller.check()
