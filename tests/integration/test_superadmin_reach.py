"""A domain admin's reach stops at a superadmin's sessions and personal folders, and at reading another
user's personal folder (through GraphQL, in the isolation matrix's world: ``tests.support.isolation``).

The superadmin user ``admin`` lives in domain ``default``, whose admin is ``dana``: she may not terminate,
execute in, read the logs of, follow or open an app of the superadmin's session, nor rename, trash,
purge, share (with herself or anyone), set the quota of, download from or follow the superadmin's
folders: each is NOT_FOUND (they are not hers to see) and records nothing. Managing a user's personal
folder gives an admin no permission on it (``domain.vfolder.access``): she may share it with others, but
neither share it with nor invite herself (FORBIDDEN).
Nor does she read them: the superadmin's sessions are missing from her ``sessions``, ``session`` (by id, name
or prefix) and ``events``, its personal folders from her ``vfolders`` and ``vfolder`` (one shared with her she
sees as any user: her own permission, no shares), and its quota scope is NOT_FOUND in her ``storageUsage``.
The superadmin keeps its full reach, and the admin keeps hers over the domain's users.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from services.sdk.app_tunnel import open_app_tunnel
from services.sdk.client import BerthAPIError, BerthClient
from tests.support.folders import seed_folder
from tests.support.gateway import CREATE
from tests.support.isolation import World, tenant_world
from tests.support.tenancy import refused

pytestmark = pytest.mark.asyncio(loop_scope="module")

ID = "$id: String!"
F = "$f: String!"
SESSION_ACTS = {
    "terminateSession": f"mutation({ID}) {{ terminateSession(sessionId: $id) {{ sessionId }} }}",
    "sessionLogs": f"query({ID}) {{ sessionLogs(sessionId: $id) }}",
    "interruptExecution": f'mutation({ID}) {{ interruptExecution(sessionId: $id, runId: "{"0" * 32}") }}',
}
SESSION_STREAMS = {
    "execute": f'subscription({ID}) {{ execute(sessionId: $id, code: "1") {{ kind }} }}',
    "sessionEvents": f"subscription({ID}) {{ sessionEvents(sessionId: $id) {{ aggregateId }} }}",
    "sessionStatus": f"subscription({ID}) {{ sessionStatus(sessionId: $id) {{ status }} }}",
}
SHARE = 'mutation($f: String!, $u: String!) { shareVFolder(folder: $f, user: $u, permission: "ro") { id } }'
INVITE = 'mutation($f: String!, $u: String!) { inviteToVFolder(folder: $f, user: $u, permission: "ro") { id } }'
FOLDER_ACTS = {
    "renameVFolder": ("mutation($f: String!, $n: String!) { renameVFolder(folder: $f, name: $n) { id } }",
                      {"n": "renamed"}),
    "trashVFolder": (f"mutation({F}) {{ trashVFolder(folder: $f) {{ id }} }}", {}),
    "shareVFolder with herself": (SHARE, {"u": "dana"}),
    "shareVFolder with a user": (SHARE, {"u": "bob"}),
    "setVFolderQuota": (f"mutation({F}) {{ setVFolderQuota(folder: $f, limitBytes: 1000) {{ id }} }}", {}),
    "requestDownload": (f'mutation({F}) {{ requestDownload(folder: $f, path: "a.txt") {{ token }} }}', {}),
}
SHOW = f"query({F}) {{ vfolder(folder: $f) {{ id }} }}"
PURGE = f"mutation({F}) {{ purgeVFolder(folder: $f) {{ id }} }}"
FOLDER_EVENTS = f"subscription({F}) {{ vfolderEvents(folder: $f) {{ type }} }}"
STREAM_WAIT = 20.0
SESSIONS = "query { sessions(first: 500) { edges { id name } } }"
SESSION = "query($id: String!) { session(id: $id) { id } }"
EVENTS = "query($id: String) { events(aggregateId: $id, first: 500) { aggregateId } }"
FOLDERS = "query { vfolders { id myPermission shares { user } } }"
USAGE_OF = "query($s: [String!]) { storageUsage(scopes: $s) { quotaScope } }"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(pg_admin_dsn: str, nats_url: str) -> AsyncIterator[World]:
    async with tenant_world(pg_admin_dsn, nats_url) as built:
        yield built


async def _superadmin_session(world: World, **spec: str) -> str:
    session = (await world.clients["superadmin"].execute(CREATE, {"input": spec}))["createSession"]["sessionId"]
    await world.settle()
    return session


async def _first_item(client: BerthClient, document: str, variables: dict[str, Any]) -> dict[str, Any]:
    async with asyncio.timeout(STREAM_WAIT):
        async for data in client.subscribe(document, variables):
            return data
    raise AssertionError("the subscription ended without an item")


async def _stream_refusal(client: BerthClient, document: str, variables: dict[str, Any]) -> BerthAPIError:
    try:
        data = await _first_item(client, document, variables)
    except BerthAPIError as exc:
        return exc
    raise AssertionError(f"not refused: {data}")


async def _folder_refusal(world: World, document: str, variables: dict[str, Any]) -> BerthAPIError:
    before = world.events()
    denied = await refused(world.clients["admin"], document, variables)
    assert world.events() == before, "a refusal recorded something"
    return denied


@pytest.mark.parametrize("act", sorted(SESSION_ACTS))
async def test_a_domain_admin_cannot_act_on_a_superadmins_session(world: World, act: str) -> None:
    session = await _superadmin_session(world)
    before = world.events()
    denied = await refused(world.clients["admin"], SESSION_ACTS[act], {"id": session})
    assert denied.code == "NOT_FOUND", (act, denied.code, denied.message)
    assert world.events() == before, "a refusal recorded something"


@pytest.mark.parametrize("stream", sorted(SESSION_STREAMS))
async def test_a_domain_admin_cannot_follow_or_execute_in_a_superadmins_session(world: World, stream: str) -> None:
    session = await _superadmin_session(world)
    denied = await _stream_refusal(world.clients["admin"], SESSION_STREAMS[stream], {"id": session})
    assert denied.code == "NOT_FOUND", (stream, denied.code, denied.message)


async def test_a_domain_admin_cannot_open_an_app_of_a_superadmins_session(world: World) -> None:
    session = await _superadmin_session(world)
    with pytest.raises(BerthAPIError) as denied:
        await open_app_tunnel(world.clients["admin"], session, 8080)
    assert denied.value.code == "NOT_FOUND", denied.value.message


async def test_the_superadmin_and_the_admin_keep_their_reach_over_sessions(world: World) -> None:
    session = await _superadmin_session(world)
    stopped = await world.clients["superadmin"].execute(SESSION_ACTS["terminateSession"], {"id": session})
    assert stopped["terminateSession"]["sessionId"] == session
    users = await world.owner_session()
    stopped = await world.clients["admin"].execute(SESSION_ACTS["terminateSession"], {"id": users})
    assert stopped["terminateSession"]["sessionId"] == users


@pytest.mark.parametrize("act", sorted(FOLDER_ACTS))
async def test_a_domain_admin_cannot_act_on_a_superadmins_folder(world: World, act: str) -> None:
    folder = seed_folder(world.dsn, world.fresh("su"), owner="admin")
    await world.settle()
    document, extra = FOLDER_ACTS[act]
    denied = await _folder_refusal(world, document, {"f": folder, **extra})
    assert denied.code == "NOT_FOUND", (act, denied.code, denied.message)


async def test_a_domain_admin_cannot_purge_a_superadmins_trashed_folder(world: World) -> None:
    folder = seed_folder(world.dsn, world.fresh("su"), owner="admin", status="trashed")
    await world.settle()
    denied = await _folder_refusal(world, PURGE, {"f": folder})
    assert denied.code == "NOT_FOUND", denied.message


async def test_a_domain_admin_cannot_follow_a_superadmins_folder(world: World) -> None:
    folder = seed_folder(world.dsn, world.fresh("su"), owner="admin")
    await world.settle()
    denied = await _stream_refusal(world.clients["admin"], FOLDER_EVENTS, {"f": folder})
    assert denied.code == "NOT_FOUND", denied.message


@pytest.mark.parametrize("document", [SHARE, INVITE], ids=["share", "invite"])
async def test_a_domain_admin_cannot_give_herself_a_users_personal_folder(world: World, document: str) -> None:
    folder = seed_folder(world.dsn, world.fresh("al"))
    await world.settle()
    denied = await _folder_refusal(world, document, {"f": folder, "u": "dana"})
    assert denied.code == "FORBIDDEN", denied.message
    download = f'mutation({F}) {{ requestDownload(folder: $f, path: "a.txt") {{ token }} }}'
    assert (await _folder_refusal(world, download, {"f": folder})).code == "FORBIDDEN"


async def test_the_superadmin_and_the_admin_keep_their_reach_over_folders(world: World) -> None:
    superadmins = seed_folder(world.dsn, world.fresh("su"), owner="admin")
    users = seed_folder(world.dsn, world.fresh("al"))
    await world.settle()
    await world.clients["superadmin"].execute(SHARE, {"f": superadmins, "u": "bob"})
    await world.clients["admin"].execute(SHARE, {"f": users, "u": "bob"})
    shown = await world.clients["admin"].execute(SHOW, {"f": users})
    assert shown["vfolder"]["id"] == users
    await world.clients["admin"].execute(FOLDER_ACTS["trashVFolder"][0], {"f": users})


async def _listed(client: BerthClient) -> set[str]:
    return {edge["id"] for edge in (await client.execute(SESSIONS))["sessions"]["edges"]}


async def _events_of(client: BerthClient, session: str | None) -> set[str]:
    return {event["aggregateId"] for event in (await client.execute(EVENTS, {"id": session}))["events"]}


async def test_a_domain_admin_does_not_list_a_superadmins_sessions_or_their_events(world: World) -> None:
    superadmins = await _superadmin_session(world, name=world.fresh("su-secret"))
    users = await world.owner_session()
    await world.settle()
    admin, superadmin = world.clients["admin"], world.clients["superadmin"]
    assert users in await _listed(admin) and superadmins not in await _listed(admin)
    assert await _events_of(admin, superadmins) == set()
    assert superadmins not in await _events_of(admin, None) and users in await _events_of(admin, users)
    assert {users, superadmins} <= await _listed(superadmin) and superadmins in await _events_of(superadmin, None)


async def test_a_domain_admin_does_not_find_a_superadmins_session_by_reference(world: World) -> None:
    name = world.fresh("su-named")
    superadmins = await _superadmin_session(world, name=name)
    await world.settle()
    for ref in (superadmins, name, superadmins[:12]):
        assert (await world.clients["admin"].execute(SESSION, {"id": ref}))["session"] is None, ref
        assert (await world.clients["superadmin"].execute(SESSION, {"id": ref}))["session"]["id"] == superadmins
    denied = await refused(world.clients["admin"], SESSION_ACTS["terminateSession"], {"id": name})
    assert denied.code == "NOT_FOUND", denied.message
    assert (await world.clients["admin"].execute(SESSION, {"id": world.session_id}))["session"] is not None


async def test_a_domain_admin_does_not_list_or_show_a_superadmins_folders(world: World) -> None:
    superadmins = seed_folder(world.dsn, world.fresh("su"), owner="admin")
    shared = seed_folder(world.dsn, world.fresh("su"), owner="admin", shares={"dana": "ro", "bob": "rw"})
    users = seed_folder(world.dsn, world.fresh("al"), shares={"bob": "ro"})
    own = seed_folder(world.dsn, world.fresh("da"), owner="dana")
    await world.settle()
    listed = {f["id"]: f for f in (await world.clients["admin"].execute(FOLDERS))["vfolders"]}
    assert superadmins not in listed and {users, own, shared} <= set(listed)
    assert listed[shared]["myPermission"] == "ro" and listed[shared]["shares"] == [], listed[shared]
    assert listed[users]["shares"] == [{"user": "bob"}]
    assert (await refused(world.clients["admin"], SHOW, {"f": superadmins})).code == "NOT_FOUND"
    everything = {f["id"] for f in (await world.clients["superadmin"].execute(FOLDERS))["vfolders"]}
    assert {superadmins, shared, users, own} <= everything


async def test_a_domain_admin_does_not_read_a_superadmins_storage_usage(world: World) -> None:
    admin = world.clients["admin"]
    denied = await refused(admin, USAGE_OF, {"s": ["user:admin"]})
    assert denied.code == "NOT_FOUND", denied.message
    usage = (await admin.execute(USAGE_OF, {"s": ["user:alice", "user:dana"]}))["storageUsage"]
    assert [u["quotaScope"] for u in usage] == ["user:alice", "user:dana"]
    usage = (await world.clients["superadmin"].execute(USAGE_OF, {"s": ["user:admin"]}))["storageUsage"]
    assert [u["quotaScope"] for u in usage] == ["user:admin"]
