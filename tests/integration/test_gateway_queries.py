"""Gateway queries over the read models: read-your-writes, ownership, paging, agents (by resource group
visibility), the event log.

Read-model rows are written directly here, as the projector would write them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid

import httpx
import psycopg
import pytest

from services.common.settings import Settings
from services.sdk.client import BerthAPIError, BerthClient
from services.gateway.main import build_app
from tests.support.gateway import (  # noqa: F401 - fixtures
    CREATE, Keys, client_for, gateway, keys, project_session, read_models, set_position,
)

SESSIONS = """query($after: String, $first: Int, $status: [String!], $owner: String, $pos: Int, $newest: Boolean! = false) {
  sessions(after: $after, first: $first, status: $status, owner: $owner, afterPosition: $pos, newestFirst: $newest) {
    edges { id name owner status requestedSlots statusHistory kernels { id clusterRole slots } }
    endCursor hasNextPage } }"""
SESSION = "query($id: String!, $pos: Int) { session(id: $id, afterPosition: $pos) { id owner kernels { id } } }"
EVENTS = """query($agg: String, $after: Int, $first: Int, $since: DateTime, $until: DateTime, $before: Int,
                 $newest: Boolean! = false) {
  events(aggregateId: $agg, afterPosition: $after, first: $first, since: $since, until: $until,
         beforePosition: $before, newestFirst: $newest) {
    position type aggregateId occurredAt actor payload } }"""
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


async def test_created_session_appears_once_the_read_model_reaches_its_position(client_for, keys: Keys, pg_dsn: str) -> None:
    alice = client_for(keys.alice)
    created = (await alice.execute(CREATE, {"input": {}}))["createSession"]
    query = asyncio.create_task(alice.execute(SESSIONS, {"pos": created["position"]}))
    await asyncio.to_thread(project_session, pg_dsn, created["sessionId"], keys.alice[0], position=created["position"])
    page = (await asyncio.wait_for(query, 10))["sessions"]
    assert [s["id"] for s in page["edges"]] == [created["sessionId"]]
    session = page["edges"][0]
    assert session["requestedSlots"] == {"cpu": "1", "mem": "1073741824"}
    assert list(session["statusHistory"]) == ["PENDING"]
    assert session["kernels"] == [{"id": f"{created['sessionId']}-k0", "clusterRole": "main",
                                   "slots": {"cpu": "1", "mem": "1073741824"}}]


async def test_a_read_model_that_stays_behind_gives_a_clear_error(read_models: str, keys: Keys) -> None:
    app = build_app(Settings(pg_dsn=read_models), read_wait=0.3)
    try:
        async with BerthClient("http://gw.test", *keys.alice, transport=httpx.ASGITransport(app=app)) as alice:
            with pytest.raises(BerthAPIError) as behind:
                await alice.execute(SESSION, {"id": "x", "pos": 42})
    finally:
        await app.aclose()
    assert behind.value.code == "READ_MODEL_BEHIND"
    assert behind.value.message == "read model behind: at 0, waiting for 42"


async def test_users_see_only_their_sessions_and_admins_see_all(client_for, keys: Keys, pg_dsn: str) -> None:
    mine, theirs = uuid.uuid4().hex, uuid.uuid4().hex
    project_session(pg_dsn, mine, keys.alice[0], position=1, created_at=T0)
    project_session(pg_dsn, theirs, keys.bob[0], position=2, created_at=T0 + dt.timedelta(seconds=1))
    alice, admin = client_for(keys.alice), client_for(keys.admin)
    assert [s["id"] for s in (await alice.execute(SESSIONS))["sessions"]["edges"]] == [mine]
    assert (await alice.execute(SESSIONS, {"owner": keys.bob[0]}))["sessions"]["edges"] == []
    assert (await alice.execute(SESSION, {"id": theirs}))["session"] is None
    assert (await alice.execute(SESSION, {"id": mine}))["session"]["kernels"] == [{"id": f"{mine}-k0"}]
    assert [s["id"] for s in (await admin.execute(SESSIONS))["sessions"]["edges"]] == [mine, theirs]
    by_owner = (await admin.execute(SESSIONS, {"owner": keys.bob[0]}))["sessions"]["edges"]
    assert [s["id"] for s in by_owner] == [theirs]
    assert (await admin.execute(SESSION, {"id": theirs}))["session"]["owner"] == keys.bob[0]


async def test_sessions_page_by_cursor_and_filter_by_status(client_for, keys: Keys, pg_dsn: str) -> None:
    ids = [f"{i:02d}{uuid.uuid4().hex[:30]}" for i in range(5)]
    for i, session_id in enumerate(ids):
        project_session(pg_dsn, session_id, keys.alice[0], position=i + 1, created_at=T0 + dt.timedelta(minutes=i),
                        status="RUNNING" if i % 2 else "PENDING")
    alice = client_for(keys.alice)
    for newest, expected in ((False, ids), (True, ids[::-1])):
        seen, after = [], None
        while True:
            page = (await alice.execute(SESSIONS, {"first": 2, "after": after, "newest": newest}))["sessions"]
            seen += [s["id"] for s in page["edges"]]
            if not page["hasNextPage"]:
                break
            after = page["endCursor"]
        assert seen == expected
    running = (await alice.execute(SESSIONS, {"status": ["RUNNING"]}))["sessions"]["edges"]
    assert [s["id"] for s in running] == [ids[1], ids[3]]


async def test_a_running_session_whose_agent_is_lost_says_so_and_when_it_ends(
        client_for, keys: Keys, pg_dsn: str) -> None:
    """The agent stalled past the heartbeat timeout: the session is still RUNNING (its kernels end only after
    the grace, 60 s here), but nothing can run in it; its detail says why and until when."""
    on_lost, on_alive = uuid.uuid4().hex, uuid.uuid4().hex
    for position, (session_id, agent) in enumerate(((on_lost, "gone"), (on_alive, "here")), start=1):
        project_session(pg_dsn, session_id, keys.alice[0], position=position, status="RUNNING",
                        created_at=T0 + dt.timedelta(seconds=position))
        with psycopg.connect(pg_dsn) as conn:
            conn.execute("UPDATE sessions SET agent_ids = %s WHERE session_id = %s", ([agent], session_id))
            _agent(conn, agent, "default")
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("UPDATE agents SET status = 'LOST', updated_at = %s WHERE agent_id = 'gone'", (T0,))
    detailed = SESSIONS.replace("statusHistory", "statusHistory statusDetail")
    edges = (await client_for(keys.alice).execute(detailed))["sessions"]["edges"]
    details = {s["id"]: (s["status"], s["statusDetail"]) for s in edges}
    assert details[on_alive] == ("RUNNING", None)
    assert details[on_lost] == ("RUNNING", "agent gone lost at 2026-01-01 00:00:00 UTC (no heartbeat): nothing runs in"
                                           " the session meanwhile, and it ends at 2026-01-01 00:01:00 UTC unless it"
                                           " comes back")
    one = (await client_for(keys.alice).execute(SESSION.replace("owner", "owner statusDetail"), {"id": on_lost}))
    assert one["session"]["statusDetail"] == details[on_lost][1]


@pytest.mark.parametrize("variables, fragment", [
    ({"after": "not-a-cursor"}, "invalid cursor"),
    ({"first": 0}, "first must be between"),
    ({"status": ["SLEEPING"]}, "unknown session status SLEEPING"),
])
async def test_bad_query_arguments_are_bad_input(client_for, keys: Keys, variables, fragment) -> None:
    with pytest.raises(BerthAPIError) as refused:
        await client_for(keys.alice).execute(SESSIONS, variables)
    assert refused.value.code == "BAD_INPUT" and fragment in refused.value.message


def _agent(conn: psycopg.Connection, agent_id: str, group: str) -> None:
    conn.execute(
        "INSERT INTO agents (agent_id, hostname, backend, resource_group, status, capacity, occupied, kernel_count,"
        " registered_at, updated_at, version) VALUES (%s, %s, 'docker', %s, 'ALIVE', %s, %s, 0, %s, %s, 1)",
        (agent_id, f"host-{agent_id}", group, json.dumps({"cpu": "8", "mem": "17179869184"}), json.dumps({}), T0, T0),
    )


def _group(conn: psycopg.Connection, name: str, *, public: bool = False, domains: tuple[str, ...] = (),
           keypairs: tuple[str, ...] = ()) -> None:
    conn.execute(
        "INSERT INTO resource_groups (name, description, options, scheduler, agent_selection, allowed_session_types,"
        " pending_timeout, is_public, visible_domains, visible_projects, visible_keypairs, created_at, updated_at,"
        " version, last_position) VALUES (%s, '', '{}', 'fifo', 'dispersed', '{interactive,batch}', 0, %s, %s, '{}',"
        " %s, %s, %s, 1, 1)",
        (name, public, list(domains), list(keypairs), T0, T0),
    )


async def test_users_see_agents_of_their_resource_groups_without_hostnames(client_for, keys: Keys, pg_dsn: str) -> None:
    """An admin sees every agent with its hostname; a user only those of the resource groups it may use
    (public, its domain's, its keypair's), hostname null."""
    with psycopg.connect(pg_dsn) as conn:
        _group(conn, "default", public=True)
        _group(conn, "ours", domains=("default",))
        _group(conn, "theirs", domains=("other",))
        _group(conn, "alices", keypairs=(keys.alice[0],))
        conn.execute(
            "INSERT INTO keypairs_view (access_key, user_name, domain, role, resource_policy, is_active, created_at,"
            " updated_at, version, last_position) VALUES (%s, 'alice', 'default', 'user', 'default', true, %s, %s, 1, 1)",
            (keys.alice[0], T0, T0),
        )
        for agent_id, group in (("a1", "default"), ("a2", "ours"), ("a3", "theirs"), ("a4", "alices")):
            _agent(conn, agent_id, group)
        set_position(conn, 7)
    query = "query($pos: Int) { agents(afterPosition: $pos) { id hostname resourceGroup capacity occupied kernelCount } }"
    admin = (await client_for(keys.admin).execute(query, {"pos": 7}))["agents"]
    assert [(a["id"], a["hostname"]) for a in admin] == [("a1", "host-a1"), ("a2", "host-a2"), ("a3", "host-a3"),
                                                         ("a4", "host-a4")]
    alice = (await client_for(keys.alice).execute(query, {"pos": 7}))["agents"]
    assert [(a["id"], a["hostname"]) for a in alice] == [("a1", None), ("a2", None), ("a4", None)]
    assert alice[0] == {"id": "a1", "hostname": None, "resourceGroup": "default",
                        "capacity": {"cpu": "8", "mem": "17179869184"}, "occupied": {}, "kernelCount": 0}
    bob = (await client_for(keys.bob).execute(query, {"pos": 7}))["agents"]
    assert [a["id"] for a in bob] == ["a1", "a2"]


def _log_event(conn: psycopg.Connection, position: int, aggregate_id: str, type_: str, at: dt.datetime) -> None:
    conn.execute(
        "INSERT INTO event_log (position, stream_seq, event_id, type, context, aggregate_id, aggregate_version,"
        " occurred_at, actor, correlation_id, payload) VALUES (%s, %s, %s, %s, %s, %s, 1, %s, 'test', 'c', %s)",
        (position, position, uuid.uuid4(), type_, type_.split(".")[0], aggregate_id, at,
         json.dumps({"type": type_, "originator_id": aggregate_id})),
    )


async def test_event_log_by_aggregate_time_and_position_cursor(client_for, keys: Keys, pg_dsn: str) -> None:
    mine, theirs = uuid.uuid4().hex, uuid.uuid4().hex
    project_session(pg_dsn, mine, keys.alice[0], position=4, created_at=T0)
    project_session(pg_dsn, theirs, keys.bob[0], position=4, created_at=T0)
    with psycopg.connect(pg_dsn) as conn:
        _log_event(conn, 1, mine, "session.requested", T0)
        _log_event(conn, 2, theirs, "session.requested", T0 + dt.timedelta(minutes=1))
        _log_event(conn, 3, mine, "session.status_changed", T0 + dt.timedelta(minutes=2))
        _log_event(conn, 4, "agent-1", "agent.registered", T0 + dt.timedelta(minutes=3))
    alice, admin = client_for(keys.alice), client_for(keys.admin)

    async def positions(client: BerthClient, **variables) -> list[int]:
        return [e["position"] for e in (await client.execute(EVENTS, variables))["events"]]

    assert await positions(admin) == [1, 2, 3, 4]
    assert await positions(alice) == [1, 3]
    assert await positions(alice, agg=theirs) == []
    assert await positions(admin, after=1, first=2) == [2, 3]
    assert await positions(admin, newest=True, first=3) == [4, 3, 2]
    assert await positions(admin, newest=True, before=3) == [2, 1]
    assert await positions(alice, newest=True, first=1) == [3]
    assert await positions(admin, since=(T0 + dt.timedelta(minutes=1)).isoformat(),
                           until=(T0 + dt.timedelta(minutes=3)).isoformat()) == [2, 3]
    event = (await alice.execute(EVENTS, {"agg": mine, "first": 1}))["events"][0]
    assert event["type"] == "session.requested" and json.loads(event["payload"])["originator_id"] == mine
