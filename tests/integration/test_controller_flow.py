"""The whole placement loop on real NATS and PostgreSQL: relay → scheduler → simulated agent →
controller → event store."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from nats.js import JetStreamContext

from contracts import commands as c
from contracts.reports import KernelRunningReport, encode_report
from contracts.session import KernelSpec, SessionSpec
from contracts.status import AgentStatus, Reason, SessionStatus
from contracts.subjects import REPORTS_STREAM, report_subject
from services.agent.main import run_agent
from services.agent.backends.simulated import SimulatedBackend
from services.application.agents import Agents
from services.application.context import make_context
from services.application.sessions import Sessions
from services.common.settings import Settings
from services.controller.main import run_controller
from services.relay.main import run_relay
from services.scheduler.main import run_scheduler
from tests.support.publish import ServiceTasks, service_tasks
from tests.support.waiting import async_wait_for

AGENT = "local"
GIB = Decimal(1024**3)
HEARTBEAT_TIMEOUT = 60.0
"""Far longer than an agent's restart or a stall of a busy machine: no test here means to lose the
agent, and a loss would sweep its kernels (one more report per kernel, sessions ended)."""


@pytest.fixture
def settings(nats_url: str, pg_dsn: str) -> Settings:
    return Settings(nats_url=nats_url, pg_dsn=pg_dsn, agent_id=AGENT, agent_capacity="cpu=4,mem=8g",
                    sim_delay=0.01, heartbeat_interval=0.1, heartbeat_timeout=HEARTBEAT_TIMEOUT)


@pytest.fixture
def backend() -> SimulatedBackend:
    return SimulatedBackend(delay=0.01)


@pytest.fixture
async def cluster(
    js: JetStreamContext, settings: Settings, apps: tuple[Sessions, Agents], backend: SimulatedBackend
) -> AsyncIterator[ServiceTasks]:
    async with service_tasks() as tasks:
        tasks.start("relay", lambda stop: run_relay(settings, stop))
        tasks.start("scheduler", lambda stop: run_scheduler(settings, stop))
        tasks.start("controller", lambda stop: run_controller(settings, stop))
        tasks.start("agent", lambda stop: run_agent(settings, stop, backend=backend))
        yield tasks


async def request(sessions: Sessions, cpu: int = 1) -> tuple[str, str]:
    session_id = uuid.uuid4().hex[:12]
    kernel_id = f"{session_id}-k"
    command = c.RequestSession(owner="alice", spec=SessionSpec(
        name="s", image="python:3.11",
        kernels=[KernelSpec(kernel_id=kernel_id, slots={"cpu": Decimal(cpu), "mem": GIB})],
    ))
    await asyncio.to_thread(sessions.request, session_id, command, make_context("test"))
    return session_id, kernel_id


async def has_status(sessions: Sessions, session_id: str, status: SessionStatus) -> bool:
    state = await asyncio.to_thread(sessions.get, session_id)
    return state is not None and state.status is status


async def wait_status(sessions: Sessions, session_id: str, status: SessionStatus) -> None:
    await async_wait_for(lambda: has_status(sessions, session_id, status), timeout=15,
                         message=f"session {session_id} did not become {status.value}")


async def reports_drained(js: JetStreamContext) -> bool:
    return (await js.stream_info(REPORTS_STREAM)).state.messages == 0


async def agent_history(agents: Agents) -> list[str]:
    return [type(e).type_name() for e in await asyncio.to_thread(agents.load, AGENT)]


async def pending_code(sessions: Sessions, session_id: str) -> str | None:
    """Returns the code of the last pending reason the scheduler recorded for the session."""
    reasons = [e for e in await asyncio.to_thread(sessions.load, session_id)
               if type(e).type_name() == "session.pending_reason_changed"]
    return reasons[-1].code if reasons else None  # type: ignore[attr-defined]


async def test_a_session_is_placed_runs_and_terminates(
    js: JetStreamContext, cluster: ServiceTasks, apps: tuple[Sessions, Agents]
) -> None:
    sessions, agents = apps
    session_id, kernel_id = await request(sessions)

    await wait_status(sessions, session_id, SessionStatus.RUNNING)
    state = await asyncio.to_thread(sessions.get, session_id)
    assert state is not None
    assert (state.kernels[0].agent_id, state.kernels[0].container_id) == (AGENT, f"sim-{kernel_id}")
    agent = await asyncio.to_thread(agents.get, AGENT)
    assert agent is not None and agent.status is AgentStatus.ALIVE and list(agent.allocations) == [kernel_id]

    await asyncio.to_thread(sessions.terminate, session_id, make_context("test"))
    await wait_status(sessions, session_id, SessionStatus.TERMINATED)
    agent = await asyncio.to_thread(agents.get, AGENT)
    assert agent is not None and agent.allocations == {}
    types = [type(e).type_name() for e in await asyncio.to_thread(sessions.load, session_id)]
    # the session may have waited for the agent to register (one pending reason) before being placed
    types = [t for t in types if t != "session.pending_reason_changed"]
    assert types == [
        "session.requested", "session.scheduled",
        "session.kernel_preparing", "session.status_changed",
        "session.kernel_creating", "session.status_changed",
        "session.kernel_started", "session.status_changed",
        "session.status_changed", "session.kernel_terminated", "session.status_changed",
    ]
    cluster.check()


async def test_a_duplicate_report_changes_nothing(
    js: JetStreamContext, cluster: ServiceTasks, apps: tuple[Sessions, Agents]
) -> None:
    sessions, _ = apps
    session_id, kernel_id = await request(sessions)
    await wait_status(sessions, session_id, SessionStatus.RUNNING)
    await async_wait_for(lambda: reports_drained(js), timeout=10)
    count = len(await asyncio.to_thread(sessions.load, session_id))

    again = KernelRunningReport(agent_id=AGENT, observed_at=dt.datetime.now(dt.UTC), session_id=session_id,
                                kernel_id=kernel_id, container_id=f"sim-{kernel_id}")
    await js.publish(report_subject(AGENT, again.type_name()), encode_report(again), headers={"Nats-Msg-Id": "dup"})
    await async_wait_for(lambda: reports_drained(js), timeout=10)

    assert (await js.stream_info(REPORTS_STREAM)).state.last_seq == 5  # started + 3 + the duplicate
    assert len(await asyncio.to_thread(sessions.load, session_id)) == count


async def test_a_session_bigger_than_any_agent_stays_pending(
    js: JetStreamContext, cluster: ServiceTasks, apps: tuple[Sessions, Agents]
) -> None:
    sessions, _ = apps
    big, _ = await request(sessions, cpu=5)
    small, _ = await request(sessions, cpu=4)
    await wait_status(sessions, small, SessionStatus.RUNNING)

    async def judged_too_large() -> bool:  # a pass saw it and refused it, rather than none ran yet
        return await pending_code(sessions, big) == "too-large"

    await async_wait_for(judged_too_large, timeout=15, message="no too-large reason for the big session")
    assert await has_status(sessions, big, SessionStatus.PENDING)


async def test_a_restarted_agent_resumes_without_duplicating_reports(
    js: JetStreamContext, cluster: ServiceTasks, settings: Settings, apps: tuple[Sessions, Agents],
    backend: SimulatedBackend,
) -> None:
    sessions, agents = apps
    first, first_kernel = await request(sessions)
    await wait_status(sessions, first, SessionStatus.RUNNING)
    await cluster.stop("agent")

    second, second_kernel = await request(sessions)  # placed now, or once the agent is back
    await asyncio.to_thread(sessions.terminate, first, make_context("test"))
    cluster.start("agent", lambda stop: run_agent(settings, stop, backend=backend))

    await wait_status(sessions, second, SessionStatus.RUNNING)
    await wait_status(sessions, first, SessionStatus.TERMINATED)
    await async_wait_for(lambda: reports_drained(js), timeout=10)
    # The restart is shorter than the heartbeat timeout, so the agent was never lost (a loss would
    # sweep its kernels, and the sweep's termination would add an exit report for the second kernel).
    assert "agent.lost" not in await agent_history(agents)
    # started, 3 for the first kernel, started again, 3 for the second, the first one's exit
    assert (await js.stream_info(REPORTS_STREAM)).state.last_seq == 9
    assert await backend.list_running() == {second_kernel: f"sim-{second_kernel}"}
    agent = await asyncio.to_thread(agents.get, AGENT)
    assert agent is not None and agent.status is AgentStatus.ALIVE and list(agent.allocations) == [second_kernel]
    changes = [e for e in await asyncio.to_thread(sessions.load, first) if type(e).type_name() == "session.status_changed"]
    assert changes[-1].reason is Reason.USER_REQUESTED  # type: ignore[attr-defined]
    cluster.check()
