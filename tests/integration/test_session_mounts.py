"""Folder mounts checked at enqueue, on real PostgreSQL: a session mounts the caller's own folders, a
project folder and a folder shared with them (by id), with the permission asked for or the caller's
own capped at rw; every refusal (unknown, not ready, in the trash, unshared, someone else's, above
the caller's permission, rw over quota, a bad or clashing target, a bad permission) is a clear error
that records nothing. The mounts are on the session's record: its spec, the read model, GraphQL."""

from __future__ import annotations

import pytest

from services.application.sessions import Sessions
from services.sdk.client import BerthClient
from tests.support.folders import seed_folder, set_project_limit
from tests.support.gateway import (  # noqa: F401 - fixtures
    CREATE, Keys, client_for, count_events, gateway, keys, read_models,
)
from tests.support.tenancy import CREATE_POLICY, CREATE_PROJECT, catch_up, refused

SET_POLICY = "mutation($k: String!, $p: String!) { setKeypairPolicy(accessKey: $k, resourcePolicy: $p) { id } }"
SESSION = "query($id: String!) { session(id: $id) { id mounts { name folderId volume target permission } } }"


@pytest.fixture
def sessions(pg_dsn: str):
    app = Sessions(pg_dsn)
    yield app
    app.close()


@pytest.fixture
async def folders(client_for, keys: Keys, read_models: str) -> dict[str, str]:
    """Folders of alice, bob (whose folders may hold 1500 bytes together) and project default (1000)."""
    dsn = read_models
    admin = client_for(keys.admin)
    await admin.execute(CREATE_POLICY, {"i": {"name": "small", "maxQuotaScopeSize": 1500}})
    await admin.execute(SET_POLICY, {"k": keys.bob[0], "p": "small"})
    set_project_limit(dsn, "default", 1000)
    seeded = {
        "data": seed_folder(dsn, "data"),
        "models": seed_folder(dsn, "models"),
        "draft": seed_folder(dsn, "draft", status="provisioning"),
        "old": seed_folder(dsn, "old", status="trashed"),
        "full": seed_folder(dsn, "full", quota=1000, usage=1000),
        "team": seed_folder(dsn, "team", owner="default", owner_kind="project", permission="ro"),
        "bobs": seed_folder(dsn, "bobs", owner="bob", shares={"alice": "ro"}),
        "gone": seed_folder(dsn, "gone", owner="bob", shares={"alice": "rw"}, unshare=("alice",)),
        "secret": seed_folder(dsn, "secret", owner="bob"),
        "teamfull": seed_folder(dsn, "teamfull", owner="default", owner_kind="project", usage=2000),
        "bobfull": seed_folder(dsn, "bobfull", owner="bob", shares={"alice": "rw"}, usage=2000),
    }
    catch_up(dsn)  # as a running projector would: quota scopes are read from the read models
    return seeded


async def create(client: BerthClient, mounts: list[dict]) -> str:
    return (await client.execute(CREATE, {"input": {"mounts": mounts}}))["createSession"]["sessionId"]


async def test_a_session_records_its_mounts(client_for, keys: Keys, folders: dict[str, str], sessions: Sessions,
                                           pg_dsn: str) -> None:
    alice = client_for(keys.alice)
    session_id = await create(alice, [
        {"name": "data"}, {"name": "models", "target": "ref/models", "permission": "RO"}, {"name": "team"},
        {"name": folders["bobs"]}, {"name": "full", "permission": "ro"},
    ])

    mounts = [(m.name, m.folder_id, m.volume, m.target, m.permission) for m in sessions.get(session_id).spec.mounts]
    assert mounts == [
        ("data", folders["data"], "local", "/home/work/data", "rw"),
        ("models", folders["models"], "local", "/home/work/ref/models", "ro"),
        ("team", folders["team"], "local", "/home/work/team", "ro"),
        ("bobs", folders["bobs"], "local", "/home/work/bobs", "ro"),
        ("full", folders["full"], "local", "/home/work/full", "ro"),
    ]
    catch_up(pg_dsn)
    shown = (await alice.execute(SESSION, {"id": session_id}))["session"]["mounts"]
    assert [(m["name"], m["folderId"], m["volume"], m["target"], m["permission"]) for m in shown] == mounts


@pytest.mark.parametrize("mounts, code, fragment", [
    ([{"name": "nothing"}], "BAD_INPUT", "no folder named 'nothing' that you can see"),
    ([{"name": "draft"}], "BAD_INPUT", "folder draft is not ready (it is provisioning)"),
    ([{"name": "old"}], "BAD_INPUT", "folder old is in the trash: restore it to mount it"),
    ([{"name": "secret"}], "BAD_INPUT", "no folder named 'secret'"),
    ([{"name": "@secret"}], "BAD_INPUT", "no folder named"),
    ([{"name": "@gone"}], "BAD_INPUT", "no folder named"),
    ([{"name": "team", "permission": "rw"}], "FORBIDDEN", "folder team: you may mount it read-only only"),
    ([{"name": "@bobs", "permission": "rw"}], "FORBIDDEN", "folder bobs: you may mount it read-only only"),
    ([{"name": "full"}], "QUOTA", "folder full is over its quota"),
    ([{"name": "teamfull"}], "QUOTA", "folder teamfull is over its quota"),
    ([{"name": "@teamfull"}], "QUOTA", "folder teamfull is over its quota"),
    ([{"name": "@bobfull", "permission": "rw"}], "QUOTA", "folder bobfull is over its quota"),
    ([{"name": "data", "target": "/etc"}], "BAD_INPUT", "must be a path under /home/work"),
    ([{"name": "data", "target": "../../etc"}], "BAD_INPUT", "no empty, '.' or '..' components"),
    ([{"name": "data", "target": "x"}, {"name": "models", "target": "x/y"}], "BAD_INPUT",
     "mount targets clash: /home/work/x/y is inside /home/work/x"),
    ([{"name": "data"}, {"name": "data", "target": "again"}], "BAD_INPUT", "mounted only once"),
    ([{"name": "data", "permission": "wd"}], "BAD_INPUT", "permission must be ro or rw"),
    ([{"name": "data", "target": "a" * 513}], "BAD_INPUT", "mount target: at most 512"),
    ([{"name": "n" * 129}], "BAD_INPUT", "mount name: at most 128"),
    ([{"name": "da\x00ta"}], "BAD_INPUT", "must not contain NUL"),
    ([{"name": "a/b"}], "BAD_INPUT", "contains '/'"),
    ([{"name": "da\nta"}], "BAD_INPUT", "control character"),
    ([{"name": "data", "target": "x\x00y"}], "BAD_INPUT", "NUL"),
    ([{"name": "data", "target": f"t{i}"} for i in range(17)], "BAD_INPUT", "mounts: at most 16 entries, got 17"),
])
async def test_refused_mounts_record_nothing(client_for, keys: Keys, folders: dict[str, str], pg_dsn: str,
                                             mounts: list[dict], code: str, fragment: str) -> None:
    for mount in mounts:
        if mount["name"].startswith("@"):
            mount["name"] = folders[mount["name"][1:]]
    before = count_events(pg_dsn)
    error = await refused(client_for(keys.alice), CREATE, {"input": {"mounts": mounts}})
    assert (error.code, fragment in error.message) == (code, True), error.message
    assert count_events(pg_dsn) == before


async def test_shared_folders_mount_by_name_and_dot_folders_by_themselves(
        client_for, keys: Keys, folders: dict[str, str], sessions: Sessions, pg_dsn: str) -> None:
    dot = seed_folder(pg_dsn, ".config")
    seed_folder(pg_dsn, ".cache", status="trashed")
    seed_folder(pg_dsn, ".bobs", owner="bob", shares={"alice": "rw"})  # not alice's own: never automatic
    seed_folder(pg_dsn, "common", owner="bob", shares={"alice": "ro"})
    seed_folder(pg_dsn, "common", owner="admin", shares={"alice": "ro"}, permission="ro")
    await client_for(keys.admin).execute(CREATE_PROJECT, {"i": {"name": "ml"}})
    seed_folder(pg_dsn, "elsewhere", owner="ml", owner_kind="project")  # a project alice is not in
    catch_up(pg_dsn)  # as a running projector would: shared folders are found by name in the read models
    alice = client_for(keys.alice)

    session_id = await create(alice, [{"name": "bobs"}])

    mounts = [(m.name, m.folder_id, m.target, m.permission) for m in sessions.get(session_id).spec.mounts]
    assert mounts == [("bobs", folders["bobs"], "/home/work/bobs", "ro"), (".config", dot, "/home/work/.config", "rw")]
    error = await refused(alice, CREATE, {"input": {"mounts": [{"name": "common"}]}})
    assert (error.code, "several folders shared with you are named 'common'" in error.message) == (
        "BAD_INPUT", True), error.message
    catch_up(pg_dsn)  # a name the read models lack is looked up again once they reach the store's position
    for name in ("elsewhere", "gone", "secret"):
        error = await refused(alice, CREATE, {"input": {"mounts": [{"name": name}]}})
        assert (error.code, f"no folder named '{name}'" in error.message) == ("BAD_INPUT", True), error.message


async def test_a_session_without_mounts_has_none(client_for, keys: Keys, sessions: Sessions, pg_dsn: str) -> None:
    alice = client_for(keys.alice)
    session_id = await create(alice, [])
    assert sessions.get(session_id).spec.mounts == []
    catch_up(pg_dsn)
    assert (await alice.execute(SESSION, {"id": session_id}))["session"]["mounts"] == []
