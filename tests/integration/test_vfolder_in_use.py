"""A folder mounted by a live session is neither trashed nor purged (Backend.AI refuses it too), on
real PostgreSQL through the gateway: the refusal is CONFLICT naming the caller's own sessions (another
user's are only counted), records nothing, and holds whether or not the read models have caught up
with the session's request (the use case reads what they lack from the store's log); a read-model
row that still shows an ended session as live refuses nothing; once the session ended, trashing works.
A session that mounted the folder before its trash (the enqueue racing the trash) keeps it from
being purged until it ends."""

from __future__ import annotations

import pytest

from services.application.context import make_context
from services.application.sessions import Sessions
from services.application.vfolders import VFolders
from tests.support.folders import seed_folder
from tests.support.gateway import (  # noqa: F401 - fixtures
    CREATE, Keys, client_for, count_events, gateway, keys, read_models,
)
from tests.support.relay import sessions  # noqa: F401 - fixture
from tests.support.tenancy import catch_up, refused

TRASH = "mutation($f: String!) { trashVFolder(folder: $f) { id } }"
RESTORE = "mutation($f: String!) { restoreVFolder(folder: $f) { id } }"
PURGE = "mutation($f: String!) { purgeVFolder(folder: $f) { id } }"
STATUS = "query($f: String!) { vfolder(folder: $f) { status } }"


async def test_a_mounted_folder_is_not_trashed_until_its_sessions_ended(
        client_for, keys: Keys, read_models: str, sessions: Sessions) -> None:
    dsn = read_models
    folder = seed_folder(dsn, "data", shares={"bob": "ro"})
    alice, bob = client_for(keys.alice), client_for(keys.bob)
    create = {"input": {"name": "train", "mounts": [{"name": "data"}]}}
    mine = (await alice.execute(CREATE, create))["createSession"]["sessionId"]
    theirs = (await bob.execute(CREATE, {"input": {"mounts": [{"name": folder}]}}))["createSession"]["sessionId"]
    before = count_events(dsn)

    # the read models have not seen either session yet: the store's log has them
    error = await refused(alice, TRASH, {"f": "data"})
    assert error.code == "CONFLICT", error.message
    assert f"folder 'data' is mounted by live session(s) train ({mine}), 1 of other users" in error.message
    assert theirs not in error.message
    catch_up(dsn)
    assert (await refused(alice, TRASH, {"f": "data"})).code == "CONFLICT"  # and by the read model
    assert count_events(dsn) == before

    sessions.terminate(mine, make_context("test"))
    sessions.terminate(theirs, make_context("test"))  # the read model still shows both pending: refuses nothing
    await alice.execute(TRASH, {"f": "data"})
    catch_up(dsn)
    assert (await alice.execute(STATUS, {"f": folder}))["vfolder"]["status"] == "trashed"
    assert (await refused(alice, CREATE, create)).code == "BAD_INPUT"  # and a trashed folder is not mounted


async def test_a_session_that_raced_the_trash_keeps_the_folder_from_being_purged(
        client_for, keys: Keys, read_models: str, sessions: Sessions) -> None:
    dsn = read_models
    folder = seed_folder(dsn, "data")
    alice = client_for(keys.alice)
    session = (await alice.execute(CREATE, {"input": {"mounts": [{"name": "data"}]}}))["createSession"]["sessionId"]
    with VFolders(dsn) as app:  # as a trash that read the log just before the session's request was recorded
        app.trash(folder, app.actor(keys.alice[0]), make_context("test"), seen=app.position())
    catch_up(dsn)
    before = count_events(dsn)

    error = await refused(alice, PURGE, {"f": folder})
    assert error.code == "CONFLICT", error.message
    assert f"({session}): purge it once they have ended" in error.message, error.message
    assert count_events(dsn) == before

    sessions.terminate(session, make_context("test"))
    await alice.execute(PURGE, {"f": folder})
    catch_up(dsn)
    assert (await alice.execute(STATUS, {"f": folder}))["vfolder"]["status"] == "purging"


UNSHARE = "mutation($f: String!, $u: String!) { unshareVFolder(folder: $f, user: $u) { id } }"
SET_PERMISSION = ("mutation($f: String!, $u: String!, $p: String!) "
                  "{ setVFolderPermission(folder: $f, user: $u, permission: $p) { id } }")
LEAVE = "mutation($f: String!) { leaveVFolder(folder: $f) { id } }"


async def test_a_user_s_access_is_not_taken_from_under_their_live_sessions(
        client_for, keys: Keys, read_models: str, sessions: Sessions) -> None:
    """Before, unsharing a folder, lowering a user's permission or the user leaving it succeeded while their session
    mounted it, and the kernel kept reading (and writing) what they no longer had."""
    dsn = read_models
    folder = seed_folder(dsn, "data", shares={"bob": "rw"})
    alice, bob = client_for(keys.alice), client_for(keys.bob)
    theirs = (await bob.execute(CREATE, {"input": {"mounts": [{"name": folder}]}}))["createSession"]["sessionId"]
    before = count_events(dsn)

    for client, query, variables, what in (
            (alice, UNSHARE, {"f": "data", "u": "bob"}, "stop sharing it with 'bob'"),
            (alice, SET_PERMISSION, {"f": "data", "u": "bob", "p": "ro"}, "lower bob's permission"),
            (bob, LEAVE, {"f": folder}, "leave it")):
        error = await refused(client, query, variables)
        assert error.code == "CONFLICT" and f"{what} once they have ended" in error.message, error.message
    assert count_events(dsn) == before
    await alice.execute(SET_PERMISSION, {"f": "data", "u": "bob", "p": "wd"})  # more is no harm

    sessions.terminate(theirs, make_context("test"))
    await alice.execute(UNSHARE, {"f": "data", "u": "bob"})
    catch_up(dsn)
    assert (await refused(bob, STATUS, {"f": folder})).code == "NOT_FOUND"
