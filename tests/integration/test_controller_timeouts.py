"""Session timeouts through the controller on real NATS and PostgreSQL: relay → controller →
simulated agent. A keypair whose resource policy allows 1 s of lifetime sees its running
session terminated with reason ``max-lifetime``; a keypair without limits does not."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from nats.js import JetStreamContext

from contracts import tenancy as tev
from contracts.quota import QuotaScope
from contracts.status import Reason, SessionStatus
from domain.emitting import Emitter
from services.agent.main import run_agent
from services.agent.backends.simulated import SimulatedBackend
from services.application.agents import Agents
from services.application.context import make_context
from services.application.sessions import Sessions
from services.common.settings import Settings
from services.controller.main import run_controller
from services.relay.main import run_relay
from tests.support.placed import AGENT, has_status, quota_releases, start_session, status_changes
from tests.support.publish import ServiceTasks, service_tasks
from tests.support.waiting import async_wait_for

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
    assert await asyncio.to_thread(quota_releases, sessions, LIMITED, limited) == [
        (QuotaScope.KEYPAIR, LIMITED), (QuotaScope.PROJECT, "default"), (QuotaScope.DOMAIN, "default")]

    await async_wait_for(lambda: has_status(sessions, free, SessionStatus.RUNNING), timeout=10)
    running = (await asyncio.to_thread(status_changes, sessions, free))[-1]
    assert running.status is SessionStatus.RUNNING
    await async_wait_for(lambda: dt.datetime.now(dt.UTC) - running.timestamp > dt.timedelta(seconds=1.5), timeout=5)
    assert await has_status(sessions, free, SessionStatus.RUNNING), "a keypair without limits keeps its session"
    agent = await asyncio.to_thread(agents.get, AGENT)
    assert agent is not None and list(agent.allocations) == [f"{free}-k"]
    cluster.check()
