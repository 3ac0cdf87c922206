"""``berth vfolder`` metadata commands and ``berth usage``'s storage table, as subprocesses
against a real gateway; a stand-in projector keeps the read models current, and the storage
service's reports are applied as the controller applies them."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from contracts.storage_reports import FolderProvisionedReport, FolderPurgedReport, UsageMeasuredReport
from services.application.context import make_context
from services.application.vfolders import VFolders, report_context_id
from tests.support.cli import as_json, berth
from tests.support.gateway import Keys, clean_streams, keys, read_models, served  # noqa: F401 - fixtures
from tests.support.tenancy import projecting  # noqa: F401 - fixture
from tests.support.waiting import async_wait_for


def storage_says(pg_dsn: str, cls: type, folder_id: str, **fields: object) -> None:
    rep = cls(report_id=uuid.uuid4().hex, volume="local", folder_id=folder_id, observed_at=dt.datetime.now(dt.UTC),
              **fields)
    with VFolders(pg_dsn) as app:
        app.apply_report(rep, make_context("storage:local", causation_id=report_context_id(rep)))


async def test_vfolder_commands(served: str, keys: Keys, projecting: None, pg_dsn: str) -> None:
    alice, bob = keys.alice, keys.bob
    created = await as_json(served, alice, "vfolder", "create", "data", "--cloneable")
    assert (created["name"], created["status"], created["myPermission"]) == ("data", "provisioning", "wd")
    folder_id = created["id"]
    storage_says(pg_dsn, FolderProvisionedReport, folder_id)
    storage_says(pg_dsn, UsageMeasuredReport, folder_id, bytes=3_041_280, files=2)  # 2.9 MiB, rounded
    _, err_out, err = await berth(served, alice, "vfolder", "create", "data", ok=False)
    assert "already exists" in err

    shared = await as_json(served, alice, "vfolder", "share", "data", "bob", "--permission", "rw")
    assert shared["shares"] == [{"user": "bob", "permission": "rw"}]
    (seen,) = await as_json(served, bob, "vfolder", "ls")
    assert (seen["id"], seen["myPermission"], seen["status"]) == (folder_id, "rw", "ready")
    _, text, _ = await berth(served, alice, "vfolder", "info", "data")
    # piped: exact byte counts, as the README promises (it printed the rounded 2.9 MiB)
    assert "3041280" in text and "bob:rw" in text and "3041280 of none (1 folder)" in text
    await as_json(served, alice, "vfolder", "unshare", "data", "bob")
    assert await as_json(served, bob, "vfolder", "ls") == []

    copy = await as_json(served, alice, "vfolder", "clone", "data", "copy")
    assert copy["cloneOf"] == folder_id and copy["status"] == "provisioning"
    invitation = (await as_json(served, alice, "vfolder", "invite", "copy", "bob", "--permission", "ro"))["id"]
    await async_wait_for(lambda: _has(as_json(served, bob, "vfolder", "invitations"), lambda rows: len(rows) == 1),
                         timeout=20)
    (pending,) = await as_json(served, bob, "vfolder", "invitations")
    assert (pending["id"], pending["folderName"], pending["inviter"]) == (invitation, "copy", "alice")
    accepted = await as_json(served, bob, "vfolder", "accept", invitation)
    assert (accepted["name"], accepted["myPermission"]) == ("copy", "ro")
    assert (await as_json(served, bob, "vfolder", "leave", copy["id"]))["state"] == "left"

    _, _, err = await berth(served, alice, "vfolder", "set-quota", "data", "1g", ok=False)
    assert "admin" in err
    assert (await as_json(served, keys.admin, "vfolder", "set-quota", folder_id, "1g"))["quotaLimit"] == 1024**3
    renamed = await as_json(served, alice, "vfolder", "rename", "data", "kept")
    assert renamed["name"] == "kept"
    assert (await as_json(served, alice, "vfolder", "rm", "kept"))["status"] == "trashed"
    assert (await as_json(served, alice, "vfolder", "restore", "kept"))["status"] == "ready"
    await as_json(served, alice, "vfolder", "rm", "kept")
    assert (await as_json(served, alice, "vfolder", "purge", "kept"))["status"] == "purging"
    storage_says(pg_dsn, FolderPurgedReport, folder_id)
    await async_wait_for(lambda: _has(as_json(served, alice, "vfolder", "ls", "--all"),
                                      lambda rows: any(r["id"] == folder_id and r["status"] == "purged" for r in rows)),
                         timeout=20)
    assert [r["name"] for r in await as_json(served, alice, "vfolder", "ls")] == ["copy"]

    storage = {r["quotaScope"]: r for r in await as_json(served, alice, "usage", "--storage")}
    assert storage["user:alice"]["folders"] == 1 and storage["user:alice"]["limitBytes"] == 0
    _, table, _ = await berth(served, alice, "usage")
    assert "user:alice" in table
    _, table, _ = await berth(served, alice, "usage", "--storage")
    assert ["user:alice", "1", "0", "0", "none"] in [line.split() for line in table.splitlines()], table


async def _has(rows, done) -> bool:  # type: ignore[no-untyped-def]
    return bool(done(await rows))


async def test_storage_policy_and_project_limit_commands(served: str, keys: Keys, projecting: None) -> None:
    admin = keys.admin
    policy = await as_json(served, admin, "admin", "policy", "create", "tiny", "--max-vfolder-count", "1",
                           "--max-quota-scope-size", "1g", "--vfolder-host", "local=create-vfolder,upload-file")
    assert (policy["maxVfolderCount"], policy["maxQuotaScopeSize"]) == (1, 1024**3)
    assert policy["allowedVfolderHosts"] == {"local": ["create-vfolder", "upload-file"]}
    _, _, err = await berth(served, admin, "admin", "policy", "update", "tiny", "--vfolder-host", "local", ok=False)
    assert "VOLUME=PERM" in err or "permission" in err
    limit = await as_json(served, admin, "admin", "project", "set-storage-limit", "default", "2g")
    assert limit["limitBytes"] == 2 * 1024**3
    await async_wait_for(lambda: _has(as_json(served, keys.alice, "usage", "--storage"),
                                      lambda rows: {r["quotaScope"]: r["limitBytes"] for r in rows}.get(
                                          "project:default") == 2 * 1024**3), timeout=20)
    _, _, err = await berth(served, keys.alice, "admin", "project", "set-storage-limit", "default", "1g", ok=False)
    assert "FORBIDDEN" in err or "admin" in err
