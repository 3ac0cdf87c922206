"""Stuck sessions through the controller on real NATS and PostgreSQL: relay → controller →
an agent whose image pull never ends. With a 1 s PREPARING deadline the session ends in
ERROR with reason ``transition-timeout``, its quota released, its kernel released on the
agent and the agent asked to stop it."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from nats.js import JetStreamContext

from contracts import session as ev
from contracts.agent import KernelAssigned, KernelTerminationRequested
from contracts.quota import QuotaScope
from contracts.status import KernelStatus, Reason, SessionStatus
from services.agent.backends.base import ProgressHandler
from services.agent.backends.simulated import SimulatedBackend
from services.agent.main import run_agent
from services.application.agents import Agents
from services.application.sessions import Sessions
from services.common.settings import Settings
from services.controller.main import run_controller
from services.relay.main import run_relay
from tests.support.placed import AGENT, has_status, quota_releases, start_session, status_changes
from tests.support.publish import ServiceTasks, service_tasks
from tests.support.waiting import async_wait_for

OWNER = "AKIA_STUCK"


class EndlessPull(SimulatedBackend):
    """A backend whose image pull never ends (until ``release`` is set): the session stays PREPARING."""

    def __init__(self) -> None:
        super().__init__(delay=0.01)
        self.release = asyncio.Event()

    async def prepare(self, kernel: KernelAssigned, progress: ProgressHandler | None = None) -> None:
        await self.release.wait()


@pytest.fixture
def settings(nats_url: str, pg_dsn: str) -> Settings:
    return Settings(nats_url=nats_url, pg_dsn=pg_dsn, agent_id=AGENT, agent_capacity="cpu=4,mem=8g",
                    heartbeat_interval=0.1, heartbeat_timeout=60.0, stuck_preparing_timeout=1.0)


@pytest.fixture
async def cluster(js: JetStreamContext, settings: Settings) -> AsyncIterator[tuple[ServiceTasks, EndlessPull]]:
    backend = EndlessPull()
    async with service_tasks() as tasks:
        tasks.start("relay", lambda stop: run_relay(settings, stop))
        tasks.start("controller", lambda stop: run_controller(settings, stop))
        tasks.start("agent", lambda stop: run_agent(settings, stop, backend=backend))
        try:
            yield tasks, backend
        finally:
            backend.release.set()


async def test_a_session_stuck_in_preparing_ends_in_error_with_everything_released(
    cluster: tuple[ServiceTasks, EndlessPull], apps: tuple[Sessions, Agents]
) -> None:
    tasks, _ = cluster
    sessions, agents = apps
    await async_wait_for(lambda: asyncio.to_thread(agents.get, AGENT), timeout=15, message="the agent did not register")
    session_id = await asyncio.to_thread(start_session, sessions, OWNER)
    await async_wait_for(lambda: has_status(sessions, session_id, SessionStatus.PREPARING), timeout=15,
                         message="the session did not reach PREPARING")

    await async_wait_for(lambda: has_status(sessions, session_id, SessionStatus.ERROR), timeout=20,
                         message="the stuck session was not ended")

    changes = await asyncio.to_thread(status_changes, sessions, session_id)
    preparing, error = changes[-2], changes[-1]
    assert (preparing.status, error.status) == (SessionStatus.PREPARING, SessionStatus.ERROR)
    assert error.reason is Reason.TRANSITION_TIMEOUT and error.metadata.actor == "service:controller"
    assert error.timestamp - preparing.timestamp >= dt.timedelta(seconds=1)
    state = await asyncio.to_thread(sessions.get, session_id)
    assert state is not None
    assert [(k.status, k.detail) for k in state.kernels] == [
        (KernelStatus.ERROR, "stuck in PREPARING for more than 1 s")]
    history = await asyncio.to_thread(sessions.load, session_id)
    assert [e.reason for e in history if isinstance(e, ev.KernelTerminated)] == [Reason.TRANSITION_TIMEOUT]

    assert await asyncio.to_thread(quota_releases, sessions, OWNER, session_id) == [
        (QuotaScope.KEYPAIR, OWNER), (QuotaScope.PROJECT, "default"), (QuotaScope.DOMAIN, "default")]
    agent = await asyncio.to_thread(agents.get, AGENT)
    assert agent is not None and agent.allocations == {}
    asked = [e for e in await asyncio.to_thread(sessions.load, AGENT) if isinstance(e, KernelTerminationRequested)]
    assert [(e.kernel_id, e.reason) for e in asked] == [(f"{session_id}-k", Reason.TRANSITION_TIMEOUT)]
    tasks.check()
