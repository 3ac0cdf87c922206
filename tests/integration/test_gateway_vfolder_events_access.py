"""``vfolderEvents`` over a real gateway and NATS follows the subscriber's access: a user the folder is no longer
shared with gets NOT_FOUND and no later event; the events naming whom the folder is shared with or who is invited
go to its managers only (as ``VFolder.shares``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from contracts.envelope import utc_now
from contracts.storage_reports import FileMovedReport, FileUploadedReport
from services.application.context import make_context
from services.application.vfolders import VFolders, report_context_id
from services.sdk.client import BerthAPIError, BerthClient
from tests.support.folders import seed_folder
from tests.support.gateway import Keys, clean_streams, create_user, keys, read_models, served  # noqa: F401 - fixtures
from tests.support.publish import publish_from_store

EVENTS = "subscription($f: String!) { vfolderEvents(folder: $f) { position type version payload } }"
INVITE = "mutation($f: String!, $u: String!) { inviteToVFolder(folder: $f, user: $u, permission: \"rw\") { id } }"
UNSHARE = "mutation($f: String!, $u: String!) { unshareVFolder(folder: $f, user: $u) { id } }"
LEAVE = "mutation($f: String!) { leaveVFolder(folder: $f) { id } }"
NAMING_USERS = {"vfolder.shared", "vfolder.unshared", "vfolder.invited", "vfolder.invitation_accepted",
                "vfolder.invitation_rejected", "vfolder.invitation_withdrawn", "vfolder.left",
                "vfolder.permission_changed"}


def stored(dsn: str, folder_id: str, report: type, **fields: object) -> None:
    """Applies a storage service's report on the folder, as the controller does."""
    rep = report(report_id=uuid.uuid4().hex, volume="local", folder_id=folder_id, observed_at=utc_now(), **fields)
    with VFolders(dsn) as app:
        app.apply_report(rep, make_context("storage:local", causation_id=report_context_id(rep)))


async def until(stream: AsyncGenerator[dict[str, Any], None], kind: str) -> list[dict[str, Any]]:
    """Returns the events of ``stream`` up to the first of type ``kind`` (included), failing after 15 s."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(15):
        while not got or got[-1]["type"] != kind:
            got.append((await anext(stream))["vfolderEvents"])
    return got


async def test_a_reader_never_gets_the_events_that_name_whom_the_folder_is_shared_with(
    served: str, keys: Keys, clean_streams: Any, pg_dsn: str,
) -> None:
    create_user(pg_dsn, "carol")
    folder_id = seed_folder(pg_dsn, "data", owner="alice", shares={"bob": "ro"})
    async with BerthClient(served, *keys.alice) as alice, BerthClient(served, *keys.bob) as bob:
        await alice.execute(INVITE, {"f": folder_id, "u": "carol"})
        stored(pg_dsn, folder_id, FileUploadedReport, path="a.txt", size=1, sha256="0" * 64, by="alice")
        await publish_from_store(clean_streams, pg_dsn, 0)
        owners, readers = alice.subscribe(EVENTS, {"f": folder_id}), bob.subscribe(EVENTS, {"f": folder_id})
        seen_by_owner = await until(owners, "vfolder.file_uploaded")
        seen_by_reader = await until(readers, "vfolder.file_uploaded")
        await owners.aclose()
        await readers.aclose()
    assert {"vfolder.shared", "vfolder.invited"} <= {e["type"] for e in seen_by_owner}  # a manager's
    assert not NAMING_USERS & {e["type"] for e in seen_by_reader}, "a reader learns nothing of the shares"
    assert not any("carol" in e["payload"] for e in seen_by_reader)
    assert [e["type"] for e in seen_by_reader] == [e["type"] for e in seen_by_owner if e["type"] not in NAMING_USERS]


@pytest.mark.parametrize("revoked_by", ["unshare", "leave"])
async def test_a_reader_who_loses_the_folder_gets_not_found_and_no_later_event(
    served: str, keys: Keys, clean_streams: Any, pg_dsn: str, revoked_by: str,
) -> None:
    folder_id = seed_folder(pg_dsn, "data", owner="alice", shares={"bob": "ro"})
    async with BerthClient(served, *keys.alice) as alice, BerthClient(served, *keys.bob) as bob:
        stored(pg_dsn, folder_id, FileUploadedReport, path="a.txt", size=1, sha256="0" * 64, by="alice")
        published = await publish_from_store(clean_streams, pg_dsn, 0)
        owners, readers = alice.subscribe(EVENTS, {"f": folder_id}), bob.subscribe(EVENTS, {"f": folder_id})
        await until(owners, "vfolder.file_uploaded")
        await until(readers, "vfolder.file_uploaded")

        if revoked_by == "unshare":
            await alice.execute(UNSHARE, {"f": folder_id, "u": "bob"})
        else:
            await bob.execute(LEAVE, {"f": folder_id})
        stored(pg_dsn, folder_id, FileMovedReport, src="a.txt", dst="secret-plans.txt", by="alice")
        await publish_from_store(clean_streams, pg_dsn, published)
        with pytest.raises(BerthAPIError) as ended:
            async with asyncio.timeout(15):
                late = (await anext(readers))["vfolderEvents"]
                pytest.fail(f"bob, no longer shared with, still got {late}")
        assert ended.value.code == "NOT_FOUND" and "no longer visible to you" in ended.value.message
        moved = await until(owners, "vfolder.file_moved")  # the owner's stream goes on
        assert [e["type"] for e in moved] == [f"vfolder.{'unshared' if revoked_by == 'unshare' else 'left'}",
                                              "vfolder.file_moved"]
        await owners.aclose()
        await readers.aclose()
