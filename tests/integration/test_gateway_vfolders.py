"""Folders through GraphQL on real PostgreSQL: create, list, share, invitations, trash / restore /
purge, clone, project folders, quota and the storage tokens (verified with the storage service's
own ``verify_token``). The storage service's reports are applied as the controller applies them."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from contracts.storage_token import verify_token
from contracts.storage_reports import (
    FileUploadedReport,
    FolderProvisionedReport,
    FolderPurgedReport,
    StorageReport,
    UsageMeasuredReport,
)
from services.application.context import make_context
from services.application.vfolders import VFolders, report_context_id
from services.common.settings import Settings
from services.gateway.app import GatewayApp
from services.gateway.auth.keypairs import create_keypair
from services.gateway.main import build_app
from services.gateway.vfolders.transfers import MAX_UPLOAD_BYTES
from services.sdk.client import BerthClient
from tests.support.gateway import Keys, client_for, create_user, keys, read_models  # noqa: F401 - fixtures
from tests.support.tenancy import CREATE_DOMAIN, CREATE_PROJECT, catch_up, refused

CREATE = "mutation($i: CreateVFolderInput!) { createVFolder(input: $i) { id position } }"
LIST = ("query { vfolders { id name ownerKind owner status myPermission permission quotaScope usageBytes "
        "shares { user permission } } }")
ONE = "query($f: String!) { vfolder(folder: $f) { id name status myPermission quotaLimit cloneOf } }"
SHARE = "mutation($f: String!, $u: String!, $p: String!) { shareVFolder(folder: $f, user: $u, permission: $p) { id } }"
RENAME = "mutation($f: String!, $n: String!) { renameVFolder(folder: $f, name: $n) { id } }"
TRASH = "mutation($f: String!) { trashVFolder(folder: $f) { id } }"
RESTORE = "mutation($f: String!) { restoreVFolder(folder: $f) { id } }"
PURGE = "mutation($f: String!) { purgeVFolder(folder: $f) { id } }"
INVITE = "mutation($f: String!, $u: String!) { inviteToVFolder(folder: $f, user: $u, permission: \"rw\") { id } }"
INVITATIONS = "query { vfolderInvitations { id folderId folderName inviter permission state } }"
ACCEPT = "mutation($i: String!) { acceptVFolderInvitation(invitationId: $i) { id } }"
REJECT = "mutation($i: String!) { rejectVFolderInvitation(invitationId: $i) { id } }"
LEAVE = "mutation($f: String!) { leaveVFolder(folder: $f) { id } }"
QUOTA = "mutation($f: String!, $b: Float!) { setVFolderQuota(folder: $f, limitBytes: $b) { id } }"
UPLOAD = ("mutation($f: String!, $p: String!, $s: Float!) { requestUpload(folder: $f, path: $p, size: $s) "
          "{ url token expiresAt path maxBytes } }")
DOWNLOAD = "mutation($f: String!, $p: String!) { requestDownload(folder: $f, path: $p) { url token path } }"
CLONE = "mutation($f: String!, $n: String!) { cloneVFolder(folder: $f, name: $n) { id } }"
ROOM = "query($f: String!) { vfolderUploadRoom(folder: $f) }"
USAGE = "query { storageUsage { quotaScope folders usageBytes limitBytes } }"
USAGE_OF = "query($s: [String!]) { storageUsage(scopes: $s) { quotaScope } }"
KEY = bytes(range(32))


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "storage.key"
    path.write_bytes(KEY)
    return path


@pytest.fixture
async def gateway(read_models: str, keys: Keys, key_file: Path) -> AsyncIterator[GatewayApp]:  # noqa: F811
    app = build_app(Settings(pg_dsn=read_models, storage_url="http://127.0.0.1:9", storage_key_file=str(key_file)),
                    read_wait=2.0)
    try:
        yield app
    finally:
        await app.aclose()


@pytest.fixture
def storage(pg_dsn: str) -> Any:
    """Applies a storage report as the controller does."""
    app = VFolders(pg_dsn)

    def report(cls: type[StorageReport], folder_id: str, **fields: object) -> None:
        rep = cls(report_id=uuid.uuid4().hex, volume="local", folder_id=folder_id,
                  observed_at=dt.datetime.now(dt.UTC), **fields)
        app.apply_report(rep, make_context("storage:local", causation_id=report_context_id(rep)))
        catch_up(pg_dsn)

    yield report
    app.close()


async def create(client: BerthClient, pg_dsn: str, name: str, **extra: object) -> str:
    folder_id = (await client.execute(CREATE, {"i": {"name": name, **extra}}))["createVFolder"]["id"]
    catch_up(pg_dsn)
    return folder_id


async def test_a_folder_is_created_provisioned_listed_shared_and_renamed(
        client_for: Callable[[tuple[str, str]], BerthClient], keys: Keys, pg_dsn: str, storage: Any) -> None:
    alice, bob = client_for(keys.alice), client_for(keys.bob)
    folder_id = await create(alice, pg_dsn, "data")
    (row,) = (await alice.execute(LIST))["vfolders"]
    assert (row["id"], row["status"], row["myPermission"], row["quotaScope"]) == (
        folder_id, "provisioning", "wd", "user:alice")
    assert (await bob.execute(LIST))["vfolders"] == []
    assert (await refused(alice, CREATE, {"i": {"name": "data"}})).code == "CONFLICT"
    assert (await refused(alice, CREATE, {"i": {"name": "../x"}})).code == "BAD_INPUT"
    assert (await refused(bob, ONE, {"f": folder_id})).code == "NOT_FOUND"
    assert (await refused(alice, ONE, {"f": "a\x00b"})).code == "BAD_INPUT"  # never reaches PostgreSQL
    assert (await refused(alice, SHARE, {"f": folder_id, "u": "b\x00", "p": "ro"})).code == "BAD_INPUT"
    assert (await refused(alice, USAGE_OF, {"s": ["user:a\x00"]})).code == "BAD_INPUT"
    assert (await refused(bob, SHARE, {"f": folder_id, "u": "bob", "p": "rw"})).code == "NOT_FOUND"

    storage(FolderProvisionedReport, folder_id)
    await alice.execute(SHARE, {"f": "data", "u": "bob", "p": "ro"})
    catch_up(pg_dsn)
    assert (await alice.execute(ONE, {"f": "data"}))["vfolder"]["status"] == "ready"
    (seen,) = (await bob.execute(LIST))["vfolders"]
    assert (seen["id"], seen["myPermission"], seen["shares"]) == (folder_id, "ro", [])  # shares: managers only
    assert (await alice.execute(LIST))["vfolders"][0]["shares"] == [{"user": "bob", "permission": "ro"}]
    assert (await refused(bob, RENAME, {"f": folder_id, "n": "mine"})).code == "FORBIDDEN"
    assert (await refused(bob, UPLOAD, {"f": folder_id, "p": "a.txt", "s": 1})).code == "FORBIDDEN"
    await alice.execute(RENAME, {"f": folder_id, "n": "renamed"})
    catch_up(pg_dsn)
    assert (await alice.execute(ONE, {"f": "renamed"}))["vfolder"]["id"] == folder_id
    assert (await bob.execute(LEAVE, {"f": folder_id}))["leaveVFolder"]["id"] == folder_id
    catch_up(pg_dsn)
    assert (await bob.execute(LIST))["vfolders"] == []


async def test_invitations_are_accepted_and_give_the_invited_permission(
        client_for: Callable[[tuple[str, str]], BerthClient], keys: Keys, pg_dsn: str, storage: Any) -> None:
    alice, bob = client_for(keys.alice), client_for(keys.bob)
    folder_id = await create(alice, pg_dsn, "work")
    storage(FolderProvisionedReport, folder_id)
    assert (await refused(alice, INVITE, {"f": folder_id, "u": "nobody"})).code == "BAD_INPUT"
    invitation = (await alice.execute(INVITE, {"f": folder_id, "u": "bob"}))["inviteToVFolder"]["id"]
    catch_up(pg_dsn)
    assert (await bob.execute(INVITATIONS))["vfolderInvitations"] == [
        {"id": invitation, "folderId": folder_id, "folderName": "work", "inviter": "alice", "permission": "rw",
         "state": "pending"}]
    assert (await refused(alice, ACCEPT, {"i": invitation})).code == "NOT_FOUND"  # not alice's
    await bob.execute(ACCEPT, {"i": invitation})
    catch_up(pg_dsn)
    assert (await bob.execute(INVITATIONS))["vfolderInvitations"] == []
    assert (await bob.execute(ONE, {"f": folder_id}))["vfolder"]["myPermission"] == "rw"
    ticket = (await bob.execute(UPLOAD, {"f": folder_id, "p": "in/b.bin", "s": 10}))["requestUpload"]
    claims = verify_token(KEY, ticket["token"], op="upload", now=time.time(), path="in/b.bin", folder=folder_id)
    assert (claims.user, claims.max_bytes, claims.quota_scope, ticket["url"]) == (
        "bob", MAX_UPLOAD_BYTES, "user:alice", "http://127.0.0.1:9")  # no limit: the largest upload
    assert (await bob.execute(ROOM, {"f": folder_id}))["vfolderUploadRoom"] is None


async def paused(gateway: GatewayApp, pg_dsn: str, request: Any) -> Any:
    """Returns the result of ``request`` (a coroutine) sent while the read models lag the store: the
    projector runs only once the gateway waits for them, or once the request has ended."""
    task = asyncio.ensure_future(request)
    deadline = time.monotonic() + 30
    while gateway.resources.positions.waiting == 0 and not task.done():
        assert time.monotonic() < deadline, "the request neither ended nor waited for the read models"
        await asyncio.sleep(0.01)
    await asyncio.to_thread(catch_up, pg_dsn)
    return await task


async def test_a_change_made_elsewhere_is_never_missing_while_the_read_models_lag(
        client_for: Callable[[tuple[str, str]], BerthClient], keys: Keys, pg_dsn: str, storage: Any,
        gateway: GatewayApp) -> None:
    alice, bob = client_for(keys.alice), client_for(keys.bob)
    for round in range(4):  # invite, then answer at once (no afterPosition), the projector not run yet
        folder_id = await create(alice, pg_dsn, f"work{round}")
        storage(FolderProvisionedReport, folder_id)
        invitation = (await alice.execute(INVITE, {"f": folder_id, "u": "bob"}))["inviteToVFolder"]["id"]
        answer, key = (ACCEPT, "acceptVFolderInvitation") if round % 2 == 0 else (REJECT, "rejectVFolderInvitation")
        assert (await paused(gateway, pg_dsn, bob.execute(answer, {"i": invitation})))[key]["id"] == folder_id
    catch_up(pg_dsn)
    assert (await refused(bob, ACCEPT, {"i": "0" * 32})).code == "NOT_FOUND"  # unknown: still refused
    shared = await create(alice, pg_dsn, "shared")
    storage(FolderProvisionedReport, shared)
    await alice.execute(SHARE, {"f": "shared", "u": "bob", "p": "rw"})  # then bob names it at once
    assert (await paused(gateway, pg_dsn, bob.execute(ONE, {"f": "shared"})))["vfolder"]["id"] == shared
    await alice.execute(SHARE, {"f": shared, "u": "admin", "p": "ro"})
    admin = client_for(keys.admin)
    assert (await paused(gateway, pg_dsn, admin.execute(ONE, {"f": shared})))["vfolder"]["id"] == shared


async def test_trash_restore_trash_purge_frees_the_name(
        client_for: Callable[[tuple[str, str]], BerthClient], keys: Keys, pg_dsn: str, storage: Any) -> None:
    alice = client_for(keys.alice)
    folder_id = await create(alice, pg_dsn, "tmp")
    storage(FolderProvisionedReport, folder_id)
    assert (await refused(alice, PURGE, {"f": folder_id})).code == "CONFLICT"
    await alice.execute(TRASH, {"f": "tmp"})
    catch_up(pg_dsn)
    assert (await alice.execute(ONE, {"f": "tmp"}))["vfolder"]["status"] == "trashed"
    assert (await refused(alice, DOWNLOAD, {"f": folder_id, "p": "x"})).code == "CONFLICT"
    await alice.execute(RESTORE, {"f": "tmp"})
    await alice.execute(TRASH, {"f": "tmp"})
    await alice.execute(PURGE, {"f": "tmp"})
    catch_up(pg_dsn)
    assert (await alice.execute(ONE, {"f": folder_id}))["vfolder"]["status"] == "purging"
    storage(FolderPurgedReport, folder_id)
    assert (await alice.execute(ONE, {"f": folder_id}))["vfolder"]["status"] == "purged"
    assert (await alice.execute(LIST))["vfolders"] == []
    assert await create(alice, pg_dsn, "tmp") != folder_id


async def test_project_folders_clone_and_quota(
        client_for: Callable[[tuple[str, str]], BerthClient], keys: Keys, pg_dsn: str, storage: Any) -> None:
    admin, alice = client_for(keys.admin), client_for(keys.alice)
    assert (await refused(alice, CREATE, {"i": {"name": "team", "project": "default"}})).code == "FORBIDDEN"
    team = await create(admin, pg_dsn, "team", project="default", permission="ro", cloneable=True)
    storage(FolderProvisionedReport, team)
    (row,) = (await alice.execute(LIST))["vfolders"]
    assert (row["ownerKind"], row["myPermission"], row["quotaScope"]) == ("project", "ro", "project:default")
    assert (await refused(alice, UPLOAD, {"f": team, "p": "x", "s": 1})).code == "FORBIDDEN"
    assert (await alice.execute(DOWNLOAD, {"f": "team", "p": "x"}))["requestDownload"]["path"] == "x"

    copy = (await alice.execute(CLONE, {"f": team, "n": "mine"}))["cloneVFolder"]["id"]
    catch_up(pg_dsn)
    assert (await alice.execute(ONE, {"f": "mine"}))["vfolder"]["cloneOf"] == team
    storage(FolderProvisionedReport, copy)
    storage(UsageMeasuredReport, copy, bytes=90, files=1)
    assert (await refused(alice, QUOTA, {"f": copy, "b": 100})).code == "FORBIDDEN"  # admins set quotas
    await admin.execute(QUOTA, {"f": copy, "b": 100})
    catch_up(pg_dsn)
    assert (await refused(alice, UPLOAD, {"f": copy, "p": "big", "s": 11})).code == "QUOTA"
    assert (await alice.execute(UPLOAD, {"f": copy, "p": "ok", "s": 10}))["requestUpload"]["maxBytes"] == 10
    usage = {u["quotaScope"]: u for u in (await alice.execute(USAGE))["storageUsage"]}
    assert (usage["user:alice"]["folders"], usage["user:alice"]["usageBytes"]) == (1, 90)
    assert usage["project:default"]["folders"] == 1


async def test_policy_limits_folder_count_and_scope_size(
        client_for: Callable[[tuple[str, str]], BerthClient], keys: Keys, pg_dsn: str, storage: Any) -> None:
    admin = client_for(keys.admin)
    await admin.execute("mutation { createResourcePolicy(input: {name: \"tiny\", maxVfolderCount: 1, "
                        "maxQuotaScopeSize: 50}) { id } }")
    create_user(pg_dsn, "carol")
    carol = client_for(create_keypair(pg_dsn, "carol", resource_policy="tiny"))
    catch_up(pg_dsn)
    first = await create(carol, pg_dsn, "one")
    error = await refused(carol, CREATE, {"i": {"name": "two"}})
    assert error.code == "BAD_INPUT" and "max_vfolder_count 1" in str(error)
    storage(FolderProvisionedReport, first)
    storage(UsageMeasuredReport, first, bytes=45, files=3)
    assert (await refused(carol, UPLOAD, {"f": first, "p": "x", "s": 6})).code == "QUOTA"
    assert (await carol.execute(UPLOAD, {"f": first, "p": "x", "s": 5}))["requestUpload"]["maxBytes"] == 5


async def test_a_clone_fits_in_what_the_quota_scope_has_left(
        client_for: Callable[[tuple[str, str]], BerthClient], keys: Keys, pg_dsn: str, storage: Any) -> None:
    """Before, a clone ignored the scope's limit: three clones of a 40-byte folder in a 100-byte scope held 160."""
    admin = client_for(keys.admin)
    await admin.execute("mutation { createResourcePolicy(input: {name: \"clones\", maxQuotaScopeSize: 100}) "
                        "{ id } }")
    create_user(pg_dsn, "fay")
    fay = client_for(create_keypair(pg_dsn, "fay", resource_policy="clones"))
    catch_up(pg_dsn)
    source = await create(fay, pg_dsn, "src", cloneable=True)
    storage(FolderProvisionedReport, source)
    storage(UsageMeasuredReport, source, bytes=40, files=1)
    copy = (await fay.execute(CLONE, {"f": "src", "n": "c1"}))["cloneVFolder"]["id"]  # 40 of 100: 60 left
    storage(FolderProvisionedReport, copy)
    storage(UsageMeasuredReport, copy, bytes=40, files=1)  # 80 of 100 used: 20 left
    catch_up(pg_dsn)
    error = await refused(fay, CLONE, {"f": "src", "n": "c2"})
    assert error.code == "QUOTA" and "20 bytes left" in error.message, error.message
    usage = {u["quotaScope"]: u for u in (await fay.execute(USAGE))["storageUsage"]}
    assert (usage["user:fay"]["folders"], usage["user:fay"]["usageBytes"]) == (2, 80)


async def test_uploaded_files_count_against_the_quota_before_their_usage_is_measured(
        client_for: Callable[[tuple[str, str]], BerthClient], keys: Keys, pg_dsn: str, storage: Any) -> None:
    admin = client_for(keys.admin)
    await admin.execute("mutation { createResourcePolicy(input: {name: \"room\", maxQuotaScopeSize: 150}) { id } }")
    create_user(pg_dsn, "erin")
    erin = client_for(create_keypair(pg_dsn, "erin", resource_policy="room"))
    catch_up(pg_dsn)
    folder_id = await create(erin, pg_dsn, "data")
    storage(FolderProvisionedReport, folder_id)

    def uploaded(path: str, size: int) -> None:  # the storage service's report of a finished upload
        storage(FileUploadedReport, folder_id, path=path, size=size, sha256="0" * 64, by="erin")

    assert (await erin.execute(UPLOAD, {"f": "data", "p": "a", "s": 100}))["requestUpload"]["maxBytes"] == 150
    uploaded("a", 100)  # no usage measured yet: the next token still counts it
    assert (await refused(erin, UPLOAD, {"f": "data", "p": "b", "s": 100})).code == "QUOTA"
    assert (await erin.execute(ROOM, {"f": "data"}))["vfolderUploadRoom"] == 50
    assert (await refused(client_for(keys.bob), ROOM, {"f": folder_id})).code == "NOT_FOUND"
    assert (await erin.execute(UPLOAD, {"f": "data", "p": "b", "s": 50}))["requestUpload"]["maxBytes"] == 50
    usage = {u["quotaScope"]: u for u in (await erin.execute(USAGE))["storageUsage"]}
    assert usage["user:erin"]["usageBytes"] == 100
    storage(UsageMeasuredReport, folder_id, bytes=100, files=1)  # the measure takes over: counted once
    assert (await erin.execute(UPLOAD, {"f": "data", "p": "b", "s": 50}))["requestUpload"]["maxBytes"] == 50
    uploaded("a", 100)  # "a" again: usage unchanged, yet counted until measured
    assert (await refused(erin, UPLOAD, {"f": "data", "p": "b", "s": 50})).code == "QUOTA"
    storage(UsageMeasuredReport, folder_id, bytes=100, files=1)  # an unchanged measure settles it
    assert (await erin.execute(UPLOAD, {"f": "data", "p": "b", "s": 50}))["requestUpload"]["maxBytes"] == 50
    usage = {u["quotaScope"]: u for u in (await erin.execute(USAGE))["storageUsage"]}
    assert usage["user:erin"]["usageBytes"] == 100


async def test_a_project_folder_lives_in_its_projects_domain(
        client_for: Callable[[tuple[str, str]], BerthClient], keys: Keys, pg_dsn: str, storage: Any) -> None:
    admin = client_for(keys.admin)
    await admin.execute(CREATE_DOMAIN, {"i": {"name": "lab"}})
    await admin.execute(CREATE_PROJECT, {"i": {"name": "ml", "domain": "lab"}})
    create_user(pg_dsn, "dave", domain="lab", projects=("ml",))
    dave = client_for(create_keypair(pg_dsn, "dave"))
    alice = client_for(keys.alice)
    assert (await refused(alice, CREATE, {"i": {"name": "x", "project": "ml"}})).code == "NOT_FOUND"
    folder_id = await create(admin, pg_dsn, "models", project="ml", permission="rw")
    (row,) = (await dave.execute(LIST))["vfolders"]
    assert (row["id"], row["owner"], row["myPermission"]) == (folder_id, "ml", "rw")
    assert (await alice.execute(LIST))["vfolders"] == []
    assert (await refused(alice, ONE, {"f": folder_id})).code == "NOT_FOUND"
