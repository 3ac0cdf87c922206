"""Invitations withdrawn through GraphQL on real PostgreSQL: a share or an unshare of the invitee
ends their pending invitation (the reviewer's case: invited rw, shared ro, unshared, then the old
invitation accepted — refused, no access); ``withdrawVFolderInvitation`` by the inviter or an admin;
bad input refused without a change."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

from contracts.storage_reports import FolderProvisionedReport
from services.application.context import make_context
from services.application.vfolders import VFolders, report_context_id
from services.sdk.client import BerthClient
from tests.support.gateway import Keys, client_for, gateway, keys, read_models  # noqa: F401 - fixtures
from tests.support.tenancy import catch_up, refused

CREATE = "mutation($i: CreateVFolderInput!) { createVFolder(input: $i) { id } }"
ONE = "query($f: String!) { vfolder(folder: $f) { id myPermission } }"
SHARE = "mutation($f: String!, $u: String!, $p: String!) { shareVFolder(folder: $f, user: $u, permission: $p) { id } }"
UNSHARE = "mutation($f: String!, $u: String!) { unshareVFolder(folder: $f, user: $u) { id } }"
INVITE = "mutation($f: String!, $u: String!) { inviteToVFolder(folder: $f, user: $u, permission: \"rw\") { id } }"
INVITATIONS = "query($all: Boolean!) { vfolderInvitations(all: $all) { id state permission } }"
ACCEPT = "mutation($i: String!) { acceptVFolderInvitation(invitationId: $i) { id } }"
WITHDRAW = ("mutation($f: String!, $i: String!) { withdrawVFolderInvitation(folder: $f, invitationId: $i) "
            "{ id position } }")


def ready_folder(dsn: str, folder_id: str) -> None:
    """Applies the storage service's report that the folder's directory exists, as the controller does."""
    rep = FolderProvisionedReport(report_id=uuid.uuid4().hex, volume="local", folder_id=folder_id,
                                  observed_at=dt.datetime.now(dt.UTC))
    with VFolders(dsn) as app:
        app.apply_report(rep, make_context("storage:local", causation_id=report_context_id(rep)))
    catch_up(dsn)


async def invite_bob(alice: BerthClient, folder: str, dsn: str) -> str:
    invitation = (await alice.execute(INVITE, {"f": folder, "u": "bob"}))["inviteToVFolder"]["id"]
    catch_up(dsn)
    return invitation


async def test_an_unshare_leaves_no_invitation_to_accept(
        client_for: Callable[[tuple[str, str]], BerthClient], keys: Keys, pg_dsn: str) -> None:
    alice, bob = client_for(keys.alice), client_for(keys.bob)
    folder = (await alice.execute(CREATE, {"i": {"name": "work"}}))["createVFolder"]["id"]
    ready_folder(pg_dsn, folder)
    invitation = await invite_bob(alice, folder, pg_dsn)  # rw
    await alice.execute(SHARE, {"f": folder, "u": "bob", "p": "ro"})
    catch_up(pg_dsn)
    assert (await bob.execute(INVITATIONS, {"all": False}))["vfolderInvitations"] == []
    assert (await bob.execute(INVITATIONS, {"all": True}))["vfolderInvitations"] == [
        {"id": invitation, "state": "withdrawn", "permission": "rw"}]
    await alice.execute(UNSHARE, {"f": folder, "u": "bob"})
    catch_up(pg_dsn)
    error = await refused(bob, ACCEPT, {"i": invitation})
    assert error.code == "CONFLICT" and "withdrawn" in str(error)
    catch_up(pg_dsn)
    assert (await refused(bob, ONE, {"f": folder})).code == "NOT_FOUND"  # no access, least of all rw


async def test_the_inviter_or_an_admin_withdraws_an_invitation(
        client_for: Callable[[tuple[str, str]], BerthClient], keys: Keys, pg_dsn: str) -> None:
    alice, bob, admin = client_for(keys.alice), client_for(keys.bob), client_for(keys.admin)
    folder = (await alice.execute(CREATE, {"i": {"name": "work"}}))["createVFolder"]["id"]
    ready_folder(pg_dsn, folder)
    invitation = await invite_bob(alice, folder, pg_dsn)

    for bad, code in (({"f": folder, "i": "a\x00b"}, "BAD_INPUT"), ({"f": folder, "i": "x" * 65}, "BAD_INPUT"),
                      ({"f": folder, "i": "0" * 32}, "NOT_FOUND"), ({"f": "nowhere", "i": invitation}, "NOT_FOUND")):
        assert (await refused(alice, WITHDRAW, bad)).code == code, bad
    assert (await refused(bob, WITHDRAW, {"f": folder, "i": invitation})).code == "NOT_FOUND"  # the invitee
    catch_up(pg_dsn)
    assert (await bob.execute(INVITATIONS, {"all": False}))["vfolderInvitations"] == [
        {"id": invitation, "state": "pending", "permission": "rw"}]  # the refusals changed nothing

    result = (await alice.execute(WITHDRAW, {"f": "work", "i": invitation}))["withdrawVFolderInvitation"]
    assert result["id"] == folder
    assert (await alice.execute(WITHDRAW, {"f": folder, "i": invitation}))["withdrawVFolderInvitation"][
        "position"] >= result["position"]  # again: a no-op
    catch_up(pg_dsn)
    assert (await bob.execute(INVITATIONS, {"all": False}))["vfolderInvitations"] == []
    assert (await refused(bob, ACCEPT, {"i": invitation})).code == "CONFLICT"

    again = await invite_bob(alice, folder, pg_dsn)  # a withdrawn invitation leaves room for a new one
    assert (await admin.execute(WITHDRAW, {"f": folder, "i": again}))["withdrawVFolderInvitation"]["id"] == folder
    catch_up(pg_dsn)
    assert [i["state"] for i in (await bob.execute(INVITATIONS, {"all": True}))["vfolderInvitations"]] == [
        "withdrawn", "withdrawn"]
