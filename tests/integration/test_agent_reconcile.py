"""Agent reconciliation on real NATS and PostgreSQL (relay → controller → agent with a simulated
backend whose containers the test changes behind the agent's back): a running kernel whose
container disappears is reported ``vanished`` and its session ends with everything released; a
container no assigned kernel explains is destroyed and recorded as
``agent.orphan_container_destroyed``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nats.js import JetStreamContext

from contracts import session as ev
from contracts.agent import OrphanContainerDestroyed
from contracts.quota import QuotaScope
from contracts.status import Reason, SessionStatus
from services.agent.backends.simulated import SimulatedBackend
from services.agent.main import run_agent
from services.application.agents import Agents
from services.application.sessions import Sessions
from services.common.settings import Settings
from services.controller.main import run_controller
from services.relay.main import run_relay
from tests.support.placed import AGENT, has_status, quota_releases, start_session
from tests.support.publish import ServiceTasks, service_tasks
from tests.support.waiting import async_wait_for

OWNER = "AKIA_RECONCILE"


class Engine(SimulatedBackend):
    """A simulated backend the test can change behind the agent's back."""

    def remove(self, kernel_id: str) -> None:
        del self._running[kernel_id]

    def plant(self, kernel_id: str) -> None:
        self._running[kernel_id] = f"sim-{kernel_id}"

    def runs(self, kernel_id: str) -> bool:
        return kernel_id in self._running


@pytest.fixture
def settings(nats_url: str, pg_dsn: str) -> Settings:
    return Settings(nats_url=nats_url, pg_dsn=pg_dsn, agent_id=AGENT, agent_capacity="cpu=4,mem=8g",
                    heartbeat_interval=0.1, heartbeat_timeout=60.0, reconcile_interval=0.2)


@pytest.fixture
async def cluster(js: JetStreamContext, settings: Settings) -> AsyncIterator[tuple[ServiceTasks, Engine]]:
    engine = Engine(delay=0.01)
    async with service_tasks() as tasks:
        tasks.start("relay", lambda stop: run_relay(settings, stop))
        tasks.start("controller", lambda stop: run_controller(settings, stop))
        tasks.start("agent", lambda stop: run_agent(settings, stop, backend=engine))
        yield tasks, engine


async def test_a_vanished_kernel_ends_its_session_and_an_orphan_is_destroyed(
    cluster: tuple[ServiceTasks, Engine], apps: tuple[Sessions, Agents]
) -> None:
    tasks, engine = cluster
    sessions, agents = apps
    await async_wait_for(lambda: asyncio.to_thread(agents.get, AGENT), timeout=15, message="the agent did not register")
    session_id = await asyncio.to_thread(start_session, sessions, OWNER)
    await async_wait_for(lambda: has_status(sessions, session_id, SessionStatus.RUNNING), timeout=15)

    engine.remove(f"{session_id}-k")  # the container is gone, and no exit was seen
    await async_wait_for(lambda: has_status(sessions, session_id, SessionStatus.TERMINATED), timeout=15,
                         message="the vanished kernel did not end its session")
    history = await asyncio.to_thread(sessions.load, session_id)
    exits = [e for e in history if isinstance(e, ev.KernelTerminated)]
    assert [(e.kernel_id, e.reason) for e in exits] == [(f"{session_id}-k", Reason.VANISHED)]
    assert exits[0].metadata.actor == f"agent:{AGENT}"
    assert await asyncio.to_thread(quota_releases, sessions, OWNER, session_id) == [
        (QuotaScope.KEYPAIR, OWNER), (QuotaScope.PROJECT, "default"), (QuotaScope.DOMAIN, "default")]
    agent = await asyncio.to_thread(agents.get, AGENT)
    assert agent is not None and agent.allocations == {}

    engine.plant("ghost-k")  # a container no kernel assigned here explains
    await async_wait_for(lambda: not engine.runs("ghost-k"), timeout=15, message="the orphan was not destroyed")

    async def recorded() -> list[OrphanContainerDestroyed]:
        return [e for e in await asyncio.to_thread(sessions.load, AGENT) if isinstance(e, OrphanContainerDestroyed)]

    await async_wait_for(recorded, timeout=15, message="the orphan's destruction was not recorded")
    [orphan] = await recorded()
    assert (orphan.kernel_id, orphan.container_id, orphan.reason) == ("ghost-k", "sim-ghost-k", Reason.ORPHANED)
    tasks.check()


async def test_a_kernel_gone_while_the_agent_was_down_is_reported_after_its_restart(
    cluster: tuple[ServiceTasks, Engine], apps: tuple[Sessions, Agents], settings: Settings
) -> None:
    tasks, _ = cluster
    sessions, agents = apps
    await async_wait_for(lambda: asyncio.to_thread(agents.get, AGENT), timeout=15, message="the agent did not register")
    session_id = await asyncio.to_thread(start_session, sessions, OWNER)
    await async_wait_for(lambda: has_status(sessions, session_id, SessionStatus.RUNNING), timeout=15)

    await tasks.stop("agent")  # the node reboots: its containers are gone when the agent comes back
    rebooted = Engine(delay=0.01)
    tasks.start("agent", lambda stop: run_agent(settings, stop, backend=rebooted))

    await async_wait_for(lambda: has_status(sessions, session_id, SessionStatus.TERMINATED), timeout=15,
                         message="the kernel lost with the node did not end its session")
    exits = [e for e in await asyncio.to_thread(sessions.load, session_id) if isinstance(e, ev.KernelTerminated)]
    assert [e.reason for e in exits] == [Reason.VANISHED]
    agent = await asyncio.to_thread(agents.get, AGENT)
    assert agent is not None and agent.allocations == {}
    tasks.check()
