"""Enqueue-time validation of createSession against tenancy: each refusal is a clear BAD_INPUT,
QUOTA or FORBIDDEN error and records nothing; an accepted request carries the tenancy fields."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading

import pytest

from contracts.status import ClusterMode
from services.sdk.client import BerthAPIError, BerthClient
from services.application.sessions import Sessions
from tests.support.gateway import (  # noqa: F401 - fixtures
    CREATE, Keys, client_for, count_events, gateway, keys, read_models,
)
from tests.support.tenancy import CREATE_POLICY, CREATE_PROJECT, CREATE_RGROUP, Tenants, catch_up, refused


@pytest.fixture
def sessions(pg_dsn: str):
    app = Sessions(pg_dsn)
    yield app
    app.close()


@pytest.fixture
async def tenants(client_for, keys: Keys) -> Tenants:
    tenants = Tenants(client_for(keys.admin), client_for)
    admin = tenants.admin
    await tenants.lab()
    await admin.execute(CREATE_POLICY, {"i": {"name": "tight", "maxContainersPerSession": 2,
                                               "maxPendingSessionCount": 2,
                                               "maxPendingSessionResourceSlots": [{"slot": "mem", "amount": "3g"}]}})
    await admin.execute(CREATE_RGROUP, {"i": {"name": "batchonly", "allowedSessionTypes": ["batch"]}})
    await admin.execute(CREATE_RGROUP, {"i": {"name": "private", "public": False, "domains": ["lab"]}})
    await tenants.user("tess", domain="default", projects=["default"], policy="tight")
    return tenants


async def create(client: BerthClient, **data: object) -> str:
    return (await client.execute(CREATE, {"input": data}))["createSession"]["sessionId"]


async def assert_refused(client: BerthClient, pg_dsn: str, data: dict, code: str, fragment: str) -> None:
    before = count_events(pg_dsn)
    error = await refused(client, CREATE, {"input": data})
    assert (error.code, fragment in error.message) == (code, True), error.message
    assert count_events(pg_dsn) == before


@pytest.mark.parametrize("who, data, code, fragment", [
    ("alice", {"project": "ml"}, "BAD_INPUT", "project ml does not exist in domain default"),
    ("alice", {"project": "nowhere"}, "BAD_INPUT", "project nowhere does not exist"),
    ("dave", {"project": "default"}, "BAD_INPUT", "project default does not exist in domain lab"),
    ("alice", {"resourceGroup": "ghost"}, "BAD_INPUT", "resource group ghost does not exist or is not available"),
    ("alice", {"resourceGroup": "private"}, "BAD_INPUT", "resource group private does not exist or is not available"),
    ("alice", {"resourceGroup": "batchonly"}, "BAD_INPUT", "does not allow interactive sessions (allowed: batch)"),
    ("tess", {"clusterSize": 3}, "QUOTA", "at most 2 containers"),
    ("tess", {"resources": [{"slot": "mem", "amount": "4g"}]}, "QUOTA", "max_pending_session_resource_slots"),
    ("alice", {"designatedAgents": ["a1"]}, "FORBIDDEN", "only admins may designate agents"),
    ("alice", {"dependencies": ["0123abcd"]}, "BAD_INPUT", "dependency 0123abcd: no such session of yours"),
    ("alice", {"dependencies": ["../x"]}, "BAD_INPUT", "invalid dependency session id"),
    ("alice", {"priority": 11}, "FORBIDDEN", "only admins may ask for a priority above 10"),
    ("alice", {"priority": 101}, "BAD_INPUT", "priority must be between 0 and 100"),
    ("alice", {"priority": -1}, "BAD_INPUT", "priority must be between 0 and 100"),
    ("alice", {"clusterMode": "everywhere"}, "BAD_INPUT", "unknown clusterMode"),
    ("alice", {"batchTimeout": -1}, "BAD_INPUT", "batchTimeout must be >= 0"),
])
async def test_refused_requests_record_nothing(tenants: Tenants, client_for, keys: Keys, pg_dsn: str,
                                               who: str, data: dict, code: str, fragment: str) -> None:
    client = client_for(keys.alice) if who == "alice" else tenants.make(tenants.keys[who])
    catch_up(pg_dsn)  # as a running projector would: a dependency named by a reference is looked up in the read models
    await assert_refused(client, pg_dsn, data, code, fragment)


async def test_pending_count_and_slots_count_only_pending_sessions(tenants: Tenants, pg_dsn: str) -> None:
    tess = tenants.make(tenants.keys["tess"])
    catch_up(pg_dsn)  # tess's pending sessions are counted once the read models have every stored event
    first = await create(tess, resources=[{"slot": "mem", "amount": "2g"}])
    catch_up(pg_dsn)
    await assert_refused(tess, pg_dsn, {"resources": [{"slot": "mem", "amount": "2g"}]}, "QUOTA", "mem")
    await create(tess)  # 1g more: 3g pending in all, the limit
    catch_up(pg_dsn)
    await assert_refused(tess, pg_dsn, {"resources": [{"slot": "mem", "amount": "512m"}]}, "QUOTA",
                         "you already have 2 pending sessions; your resource policy allows 2")
    await tess.execute("mutation($id: String!) { terminateSession(sessionId: $id) { position } }", {"id": first})
    catch_up(pg_dsn)
    await create(tess, resources=[{"slot": "mem", "amount": "2g"}])  # the cancelled one no longer counts


def _project_until(dsn: str, stop: threading.Event) -> None:
    """Projects what is stored, again and again, as a running projector would, until ``stop``."""
    while not stop.wait(0.005):
        catch_up(dsn)


async def test_concurrent_requests_never_pass_the_pending_limit(tenants: Tenants, pg_dsn: str) -> None:
    """Six requests at once under a limit of 2 pending sessions: two accepted. Each counted the read model
    before any was recorded, and three or more passed."""
    tess = tenants.make(tenants.keys["tess"])
    catch_up(pg_dsn)
    stop = threading.Event()
    projector = asyncio.ensure_future(asyncio.to_thread(_project_until, pg_dsn, stop))
    try:
        results = await asyncio.gather(*(create(tess) for _ in range(6)), return_exceptions=True)
    finally:
        stop.set()
        await projector
    refusals = [r for r in results if not isinstance(r, str)]
    assert len(results) - len(refusals) == 2, results
    assert all(isinstance(r, BerthAPIError) and r.code == "QUOTA" for r in refusals), refusals
    assert {r.message for r in refusals} == {"you already have 2 pending sessions; your resource policy allows 2"}


async def test_accepted_request_carries_tenancy_and_scheduling_fields(tenants: Tenants, client_for, keys: Keys,
                                                                      sessions: Sessions, pg_dsn: str) -> None:
    dave = tenants.make(tenants.keys["dave"])
    first = await create(dave)
    state = sessions.get(first)
    assert state is not None
    assert (state.spec.user, state.spec.domain, state.spec.project, state.spec.resource_group) == (
        "dave", "lab", "ml", "default")
    starts = "2030-01-02T03:04:05+00:00"
    second = await create(dave, resourceGroup="private", priority=5, clusterMode="MULTI-NODE", clusterSize=2,
                          startsAt=starts, batchTimeout=600, sessionType="batch", startupCommand="true",
                          dependencies=[first, first])
    spec = sessions.load(second)[0].spec
    assert (spec.resource_group, spec.priority, spec.cluster_mode, spec.batch_timeout) == (
        "private", 5, ClusterMode.MULTI_NODE, 600)
    assert spec.starts_at == dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert spec.dependencies == [first]
    # a superadmin may designate agents and use a project of its domain it is not a member of
    await tenants.admin.execute(CREATE_PROJECT, {"i": {"name": "ops"}})
    third = await create(tenants.admin, designatedAgents=["a1", "a2"], project="ops")
    third_spec = sessions.get(third).spec  # type: ignore[union-attr]
    assert (sessions.load(third)[0].spec.designated_agents, third_spec.project) == (["a1", "a2"], "ops")
    # someone else's session is no dependency of yours
    await assert_refused(client_for(keys.alice), pg_dsn, {"dependencies": [first]}, "BAD_INPUT", "no such session")


async def test_default_project_is_the_first_one_of_a_non_member_of_default(tenants: Tenants, sessions: Sessions) -> None:
    await tenants.admin.execute(CREATE_PROJECT, {"i": {"name": "cv", "domain": "lab"}})
    frank = await tenants.user("frank", projects=["cv", "ml"])
    assert sessions.get(await create(frank)).spec.project == "cv"  # type: ignore[union-attr]
    assert sessions.get(await create(frank, project="ml")).spec.project == "ml"  # type: ignore[union-attr]
    nobody = await tenants.user("nobody", projects=[])
    error = await refused(nobody, CREATE, {"input": {}})
    assert (error.code, "belongs to no project" in error.message) == ("BAD_INPUT", True)


async def test_an_admin_may_ask_for_a_priority_above_the_default(client_for, keys: Keys, sessions: Sessions) -> None:
    admin = client_for(keys.admin)
    state = sessions.get(await create(admin, priority=90))
    assert state is not None and state.spec.priority == 90
