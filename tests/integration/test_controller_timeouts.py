"""Session timeouts through the controller on real NATS and PostgreSQL: relay → controller →
simulated agent. A keypair whose resource policy allows 1 s of lifetime sees its running
session terminated with reason ``max-lifetime``; a keypair without limits does not."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from nats.js import JetStreamContext

from contracts import commands as c
from contracts import session as ev
from contracts import tenancy as tev
from contracts.quota import QuotaReleased, QuotaScope, quota_id
from contracts.session import KernelPlacement, KernelSpec
from contracts.status import Reason, SessionStatus
from domain import agent as agent_domain
from domain import quota as quota_domain
from domain import session as session_domain
from domain.emitting import Emitter
from services.agent.main import run_agent
from services.agent.backends.simulated import SimulatedBackend
from services.application.agents import Agents
from services.application.context import make_context
from services.application.sessions import Sessions
from services.common.settings import Settings
from services.controller.main import run_controller
from services.relay.main import run_relay
from tests.support.publish import ServiceTasks, service_tasks
from tests.support.waiting import async_wait_for

AGENT = "local"
GIB = Decimal(1024**3)
LIMITED, FREE = "AKIA_LIMITED", "AKIA_FREE"


@pytest.fixture
def settings(nats_url: str, pg_dsn: str) -> Settings:
    return Settings(nats_url=nats_url, pg_dsn=pg_dsn, agent_id=AGENT, agent_capacity="cpu=4,mem=8g", sim_delay=0.01,
                    heartbeat_interval=0.1, heartbeat_timeout=60.0)  # never lost: a loss would end the sessions


@pytest.fixture
async def cluster(js: JetStreamContext, settings: Settings) -> AsyncIterator[ServiceTasks]:
    async with service_tasks() as tasks:
        tasks.start("relay", lambda stop: run_relay(settings, stop))
        tasks.start("controller", lambda stop: run_controller(settings, stop))
        tasks.start("agent", lambda stop: run_agent(settings, stop, backend=SimulatedBackend(delay=0.01)))
        yield tasks


def tenancy(sessions: Sessions) -> None:
    """Records policy "short" (1 s of lifetime) and "free" (no limit), and one keypair on each."""
    ctx = make_context("test")
    sessions.record([
        Emitter(tev.policy_id("short"), 0, ctx)(tev.ResourcePolicyCreated, name="short",
                                                  limits=tev.KeypairLimits(max_session_lifetime=1)),
        Emitter(tev.policy_id("free"), 0, ctx)(tev.ResourcePolicyCreated, name="free", limits=tev.KeypairLimits()),
        Emitter(LIMITED, 0, ctx)(tev.KeypairCreated, user="alice", role=tev.Role.USER, resource_policy="short"),
        Emitter(FREE, 0, ctx)(tev.KeypairCreated, user="bob", role=tev.Role.USER, resource_policy="free"),
    ])


def start_session(sessions: Sessions, owner: str) -> str:
    """Records a one-kernel session of ``owner`` and places it on AGENT with its quota, as the
    scheduler does; returns its id."""
    session_id = uuid.uuid4().hex[:12]
    ctx = make_context("test")
    kernel = KernelSpec(kernel_id=f"{session_id}-k", slots={"cpu": Decimal(1), "mem": GIB})
    sessions.record([Emitter(session_id, 0, ctx)(ev.SessionRequested, owner=owner, spec=ev.SessionSpec(
        name="s", image="python:3.11", kernels=[kernel],
    ))])
    state = sessions.get(session_id)
    events = session_domain.decide(state, c.ScheduleSession(
        placements=[KernelPlacement(kernel_id=kernel.kernel_id, agent_id=AGENT)]), ctx, session_id)
    events += agent_domain.decide(agent_domain.replay(sessions.load(AGENT)), c.AssignKernel(
        kernel_id=kernel.kernel_id, session_id=session_id, image="python:3.11", slots=kernel.slots), ctx, AGENT)
    for scope, name in quota_domain.quota_scopes(owner, "default", "default"):
        qid = quota_id(scope, name)
        events += quota_domain.decide(quota_domain.replay(sessions.load(qid)),
                                      c.ConsumeQuota(allocations={session_id: dict(kernel.slots)}), ctx, qid)
    sessions.record(events)
    return session_id


def status_changes(sessions: Sessions, session_id: str) -> list[ev.SessionStatusChanged]:
    return [e for e in sessions.load(session_id) if isinstance(e, ev.SessionStatusChanged)]


async def has_status(sessions: Sessions, session_id: str, status: SessionStatus) -> bool:
    state = await asyncio.to_thread(sessions.get, session_id)
    return state is not None and state.status is status


async def test_a_session_past_its_max_lifetime_is_terminated(
    cluster: ServiceTasks, apps: tuple[Sessions, Agents]
) -> None:
    sessions, agents = apps
    await asyncio.to_thread(tenancy, sessions)
    await async_wait_for(lambda: asyncio.to_thread(agents.get, AGENT), timeout=15, message="the agent did not register")
    limited = await asyncio.to_thread(start_session, sessions, LIMITED)
    free = await asyncio.to_thread(start_session, sessions, FREE)

    await async_wait_for(lambda: has_status(sessions, limited, SessionStatus.TERMINATED), timeout=20,
                         message="the limited session was not terminated")

    changes = await asyncio.to_thread(status_changes, sessions, limited)
    by_status = {change.status: change for change in changes}
    assert [c.status for c in changes][-3:] == [SessionStatus.RUNNING, SessionStatus.TERMINATING, SessionStatus.TERMINATED]
    assert by_status[SessionStatus.TERMINATING].reason is Reason.MAX_LIFETIME
    assert by_status[SessionStatus.TERMINATED].reason is Reason.MAX_LIFETIME
    assert by_status[SessionStatus.TERMINATING].metadata.actor == "service:controller"
    lived = by_status[SessionStatus.TERMINATING].timestamp - by_status[SessionStatus.RUNNING].timestamp
    assert dt.timedelta(seconds=1) <= lived < dt.timedelta(seconds=10)
    releases = [e for s, n in quota_domain.quota_scopes(LIMITED, "default", "default")
                for e in await asyncio.to_thread(sessions.load, quota_id(s, n))
                if isinstance(e, QuotaReleased) and e.session_id == limited]
    assert [(e.scope, e.name) for e in releases] == [
        (QuotaScope.KEYPAIR, LIMITED), (QuotaScope.PROJECT, "default"), (QuotaScope.DOMAIN, "default")]

    await async_wait_for(lambda: has_status(sessions, free, SessionStatus.RUNNING), timeout=10)
    running = (await asyncio.to_thread(status_changes, sessions, free))[-1]
    assert running.status is SessionStatus.RUNNING
    await async_wait_for(lambda: dt.datetime.now(dt.UTC) - running.timestamp > dt.timedelta(seconds=1.5), timeout=5)
    assert await has_status(sessions, free, SessionStatus.RUNNING), "a keypair without limits keeps its session"
    agent = await asyncio.to_thread(agents.get, AGENT)
    assert agent is not None and list(agent.allocations) == [f"{free}-k"]
    cluster.check()
