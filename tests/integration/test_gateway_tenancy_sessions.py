"""Session ownership by tenancy: a user sees and touches only its sessions, an admin those of
its domain, a superadmin all. Someone else's session is NOT_FOUND (existence does not leak)."""

from __future__ import annotations

import pytest

from services.sdk.client import BerthClient
from tests.support.gateway import (  # noqa: F401 - fixtures
    CREATE, TERMINATE, Keys, client_for, count_events, gateway, keys, read_models,
)
from tests.support.tenancy import SESSION, SESSIONS, Tenants, catch_up, refused

EVENTS = "query { events(first: 500) { aggregateId type } }"


async def create(client: BerthClient) -> str:
    return (await client.execute(CREATE, {"input": {}}))["createSession"]["sessionId"]


async def visible(client: BerthClient) -> set[str]:
    return {s["id"] for s in (await client.execute(SESSIONS))["sessions"]["edges"]}


async def seen_in_events(client: BerthClient) -> set[str]:
    return {e["aggregateId"] for e in (await client.execute(EVENTS))["events"] if e["type"].startswith("session.")}


@pytest.fixture
async def world(client_for, keys: Keys, pg_dsn: str) -> dict[str, object]:
    tenants = Tenants(client_for(keys.admin), client_for)
    carol, dave = await tenants.lab()
    erin = await tenants.user("erin", domain="default", role="admin", projects=["default"])
    alice, bob = client_for(keys.alice), client_for(keys.bob)
    sessions = {"alice": await create(alice), "bob": await create(bob), "dave": await create(dave)}
    catch_up(pg_dsn)
    return {"admin": tenants.admin, "alice": alice, "bob": bob, "carol": carol, "dave": dave, "erin": erin,
            "sessions": sessions}


async def test_sessions_carry_the_owner_s_domain_and_project(world: dict) -> None:
    dave_session = (await world["dave"].execute(SESSION, {"id": world["sessions"]["dave"]}))["session"]
    assert (dave_session["domain"], dave_session["project"], dave_session["resourceGroup"]) == ("lab", "ml", "default")
    assert (dave_session["priority"], dave_session["pendingCode"], dave_session["status"]) == (10, None, "PENDING")
    alice_session = (await world["alice"].execute(SESSION, {"id": world["sessions"]["alice"]}))["session"]
    assert (alice_session["domain"], alice_session["project"]) == ("default", "default")


@pytest.mark.parametrize("who, sees", [
    ("alice", {"alice"}),
    ("bob", {"bob"}),
    ("dave", {"dave"}),
    ("carol", {"dave"}),           # admin of lab
    ("erin", {"alice", "bob"}),    # admin of default
    ("admin", {"alice", "bob", "dave"}),
])
async def test_who_sees_which_sessions(world: dict, who: str, sees: set[str]) -> None:
    client, sessions = world[who], world["sessions"]
    expected = {sessions[name] for name in sees}
    assert await visible(client) == expected
    assert await seen_in_events(client) == expected
    for name, session_id in sessions.items():
        found = (await client.execute(SESSION, {"id": session_id}))["session"]
        assert (found is not None) == (name in sees), (who, name)


@pytest.mark.parametrize("who, target", [("bob", "alice"), ("dave", "alice"), ("carol", "alice"), ("erin", "dave")])
async def test_no_one_terminates_a_session_it_may_not_see(world: dict, pg_dsn: str, who: str, target: str) -> None:
    before = count_events(pg_dsn)
    error = await refused(world[who], TERMINATE, {"id": world["sessions"][target]})
    assert (error.code, error.message) == ("NOT_FOUND", f"session {world['sessions'][target]} not found")
    assert count_events(pg_dsn) == before


@pytest.mark.parametrize("who, target", [("carol", "dave"), ("erin", "alice"), ("admin", "dave"), ("alice", "alice")])
async def test_owners_their_domain_admins_and_superadmins_terminate(world: dict, pg_dsn: str, who: str, target: str) -> None:
    result = (await world[who].execute(TERMINATE, {"id": world["sessions"][target]}))["terminateSession"]
    catch_up(pg_dsn)
    status = (await world["admin"].execute(SESSION, {"id": result["sessionId"]}))["session"]["status"]
    assert status == "CANCELLED"
