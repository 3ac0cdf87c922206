"""The controller on real NATS and PostgreSQL: reports in, domain events out; agent liveness."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from nats.js import JetStreamContext

from contracts import commands as c
from contracts.reports import AgentStarted, KernelCreatingReport, KernelExitedReport, KernelPullingReport
from contracts.reports import KernelRunningReport, Report, encode_report
from contracts.session import KernelPlacement, KernelSpec, SessionSpec
from contracts.status import AgentStatus, SessionStatus
from contracts.subjects import DEADLETTER_STREAM, HEADER_ERROR, HEADER_ORIGINAL_SUBJECT, REPORTS_STREAM, report_subject
from domain import agent as agent_domain
from domain import session as session_domain
from services.agent.heartbeat import beat
from services.application.agents import Agents
from services.common.bus import heartbeat_bucket
from services.application.context import make_context
from services.application.sessions import Sessions
from services.common.settings import Settings
from services.controller.main import run_controller
from services.relay.main import run_relay
from tests.support.publish import ServiceTasks, service_tasks
from tests.support.waiting import async_wait_for

AGENT = "local"
GIB = Decimal(1024**3)


LOSS_TIMEOUT = 3.0
"""The heartbeat timeout of the tests that mean to lose an agent: 30 missed beats, longer than a busy
machine stalls, short enough to wait for."""


@pytest.fixture
def heartbeat_timeout() -> float:
    """Far longer than a busy machine stalls: the tests that do not mean to lose an agent never do.
    Those that do parametrize it with ``LOSS_TIMEOUT``."""
    return 60.0


@pytest.fixture
def settings(nats_url: str, pg_dsn: str, heartbeat_timeout: float) -> Settings:
    return Settings(nats_url=nats_url, pg_dsn=pg_dsn, heartbeat_interval=0.1, heartbeat_timeout=heartbeat_timeout)


@pytest.fixture
async def services(js: JetStreamContext, settings: Settings, apps: tuple[Sessions, Agents]) -> AsyncIterator[ServiceTasks]:
    async with service_tasks() as tasks:
        tasks.start("relay", lambda stop: run_relay(settings, stop))
        tasks.start("controller", lambda stop: run_controller(settings, stop))
        yield tasks


async def send(js: JetStreamContext, report: Report, msg_id: str | None = None) -> None:
    await js.publish(report_subject(report.agent_id, report.type_name()), encode_report(report),
                     headers={"Nats-Msg-Id": msg_id or uuid.uuid4().hex})


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def started(agent_id: str = AGENT) -> AgentStarted:
    return AgentStarted(agent_id=agent_id, observed_at=now(), capacity={"cpu": Decimal(4), "mem": 8 * GIB},
                        backend="simulated", hostname="h")


async def drained(js: JetStreamContext) -> bool:
    """Returns True once the controller has acknowledged (or dead-lettered) every report."""
    return (await js.stream_info(REPORTS_STREAM)).state.messages == 0


async def agent_status(agents: Agents, agent_id: str) -> AgentStatus | None:
    state = await asyncio.to_thread(agents.get, agent_id)
    return state.status if state is not None else None


async def register(js: JetStreamContext, agents: Agents, agent_id: str = AGENT) -> None:
    await send(js, started(agent_id))
    await async_wait_for(lambda: agent_status(agents, agent_id), timeout=10, message=f"{agent_id} not registered")


def schedule(sessions: Sessions, agent_id: str = AGENT) -> tuple[str, str]:
    """Records a one-kernel session placed on ``agent_id``; returns (session id, kernel id)."""
    session_id = uuid.uuid4().hex[:12]
    kernel_id = f"{session_id}-k"
    ctx = make_context("test")
    request = c.RequestSession(owner="alice", spec=SessionSpec(
        name="s", image="img", kernels=[KernelSpec(kernel_id=kernel_id, slots={"cpu": Decimal(1), "mem": GIB})],
    ))
    sessions.request(session_id, request, ctx)
    state = sessions.get(session_id)
    events = session_domain.decide(
        state, c.ScheduleSession(placements=[KernelPlacement(kernel_id=kernel_id, agent_id=agent_id)]), ctx, session_id
    )
    agent = agent_domain.replay(sessions.load(agent_id))
    events += agent_domain.decide(
        agent, c.AssignKernel(kernel_id=kernel_id, session_id=session_id, image="img", slots={"cpu": Decimal(1), "mem": GIB}),
        ctx, agent_id,
    )
    sessions.record(events)
    return session_id, kernel_id


async def session_status(sessions: Sessions, session_id: str) -> SessionStatus:
    state = await asyncio.to_thread(sessions.get, session_id)
    assert state is not None
    return state.status


async def has_status(sessions: Sessions, session_id: str, status: SessionStatus) -> bool:
    return await session_status(sessions, session_id) is status


async def agent_has(agents: Agents, agent_id: str, status: AgentStatus) -> bool:
    return await agent_status(agents, agent_id) is status


async def dead_letters(js: JetStreamContext, count: int) -> list:  # type: ignore[type-arg]
    sub = await js.pull_subscribe("dlq.controller.>", stream=DEADLETTER_STREAM)  # every agent's share
    got: list = []  # type: ignore[type-arg]

    async def more() -> bool:
        try:
            got.extend(await sub.fetch(count - len(got), timeout=0.2))
        except TimeoutError:
            pass
        return len(got) >= count

    await async_wait_for(more, timeout=10, message=f"expected {count} dead letters")
    await sub.unsubscribe()
    return got


@pytest.fixture
async def heartbeats(js: JetStreamContext) -> AsyncIterator[dict[str, asyncio.Event]]:
    """Starts heartbeats per agent on demand: ``heartbeats.start(agent_id)`` returns the event that stops them."""
    kv = await heartbeat_bucket(js)
    tasks: list[asyncio.Task[None]] = []

    class Beats(dict):  # type: ignore[type-arg]
        def start(self, agent_id: str) -> asyncio.Event:
            stop = asyncio.Event()
            tasks.append(asyncio.create_task(beat(kv, agent_id, 0.1, stop)))
            self[agent_id] = stop
            return stop

    beats = Beats()
    yield beats
    for stop in beats.values():
        stop.set()
    await asyncio.gather(*tasks)


async def test_reports_drive_a_session_to_running_then_terminated(
    js: JetStreamContext, services: ServiceTasks, apps: tuple[Sessions, Agents], heartbeats
) -> None:
    sessions, agents = apps
    heartbeats.start(AGENT)
    await register(js, agents)
    session_id, kernel_id = await asyncio.to_thread(schedule, sessions)
    base = {"agent_id": AGENT, "session_id": session_id, "kernel_id": kernel_id}

    await send(js, KernelPullingReport(observed_at=now(), **base))
    await send(js, KernelCreatingReport(observed_at=now(), **base))
    await send(js, KernelRunningReport(observed_at=now(), container_id="sim-1", **base))
    await async_wait_for(lambda: has_status(sessions, session_id, SessionStatus.RUNNING), timeout=10)

    await asyncio.to_thread(sessions.terminate, session_id, make_context("test"))
    assert await session_status(sessions, session_id) is SessionStatus.TERMINATING
    agent = await asyncio.to_thread(agents.get, AGENT)
    assert agent is not None and agent.allocations[kernel_id].terminating

    await send(js, KernelExitedReport(observed_at=now(), exit_code=0, reason="user-requested", **base))
    await async_wait_for(lambda: has_status(sessions, session_id, SessionStatus.TERMINATED), timeout=10)
    agent = await asyncio.to_thread(agents.get, AGENT)
    assert agent is not None and agent.allocations == {}
    state = await asyncio.to_thread(sessions.get, session_id)
    assert state is not None and (state.kernels[0].container_id, state.kernels[0].exit_code) == ("sim-1", 0)
    services.check()


async def test_duplicate_and_late_reports_change_nothing(
    js: JetStreamContext, services: ServiceTasks, apps: tuple[Sessions, Agents], heartbeats
) -> None:
    sessions, agents = apps
    heartbeats.start(AGENT)
    await register(js, agents)
    session_id, kernel_id = await asyncio.to_thread(schedule, sessions)
    base = {"agent_id": AGENT, "session_id": session_id, "kernel_id": kernel_id}
    running = KernelRunningReport(observed_at=now(), container_id="sim-1", **base)
    await send(js, running)
    await async_wait_for(lambda: has_status(sessions, session_id, SessionStatus.RUNNING), timeout=10)
    await async_wait_for(lambda: drained(js), timeout=10)
    count = len(await asyncio.to_thread(sessions.load, session_id))
    position = await asyncio.to_thread(sessions.position)

    await send(js, running, msg_id="another-id")  # the same report again
    await send(js, KernelPullingReport(observed_at=now(), **base))  # a late one
    await send(js, started())  # a re-announcement with the same capacity
    await async_wait_for(lambda: drained(js), timeout=10)

    assert len(await asyncio.to_thread(sessions.load, session_id)) == count
    assert await asyncio.to_thread(sessions.position) == position
    assert await session_status(sessions, session_id) is SessionStatus.RUNNING


async def test_a_malformed_report_is_dead_lettered_and_the_next_one_processed(
    js: JetStreamContext, services: ServiceTasks, apps: tuple[Sessions, Agents]
) -> None:
    _, agents = apps
    await js.publish(report_subject(AGENT, "kernel_running"), b"\x00 not json", headers={"Nats-Msg-Id": "garbage"})
    await register(js, agents)

    (letter,) = await dead_letters(js, 1)
    assert letter.data == b"\x00 not json"
    assert "DecodeError" in letter.headers[HEADER_ERROR]
    assert letter.headers[HEADER_ORIGINAL_SUBJECT] == "rp.agent.local.kernel_running"
    services.check()


async def test_reports_that_can_never_apply_are_dead_lettered(
    js: JetStreamContext, services: ServiceTasks, apps: tuple[Sessions, Agents], heartbeats
) -> None:
    sessions, agents = apps
    heartbeats.start(AGENT)
    heartbeats.start("other")
    await register(js, agents)
    await register(js, agents, "other")
    session_id, kernel_id = await asyncio.to_thread(schedule, sessions)
    count = len(await asyncio.to_thread(sessions.load, session_id))

    await send(js, KernelRunningReport(agent_id=AGENT, observed_at=now(), session_id="nope", kernel_id="k",
                                       container_id="c"))
    await send(js, KernelRunningReport(agent_id=AGENT, observed_at=now(), session_id=session_id, kernel_id="nope",
                                       container_id="c"))
    await send(js, KernelRunningReport(agent_id="other", observed_at=now(), session_id=session_id,
                                       kernel_id=kernel_id, container_id="c"))
    forged = KernelRunningReport(agent_id=AGENT, observed_at=now(), session_id=session_id, kernel_id=kernel_id,
                                 container_id="c")
    await js.publish(report_subject("other", "kernel_running"), encode_report(forged))
    bad_capacity = AgentStarted(agent_id="odd", observed_at=now(), capacity={"gpu": Decimal(1)}, backend="b", hostname="h")
    await send(js, bad_capacity)

    letters = await dead_letters(js, 5)
    errors = [m.headers[HEADER_ERROR] for m in letters]
    assert "session nope not found" in errors[0]
    assert f"session {session_id} has no kernel nope" in errors[1]
    assert "is not assigned to agent other" in errors[2]
    assert "agent other sent a report as agent local" in errors[3]
    assert "unknown resource slot 'gpu'" in errors[4]
    assert len(await asyncio.to_thread(sessions.load, session_id)) == count
    assert await agent_status(agents, "odd") is None
    services.check()


@pytest.mark.parametrize("heartbeat_timeout", [LOSS_TIMEOUT])
async def test_a_silent_agent_is_lost_and_recovers_when_it_beats_again(
    js: JetStreamContext, services: ServiceTasks, apps: tuple[Sessions, Agents], heartbeats
) -> None:
    _, agents = apps
    stop_beating = heartbeats.start("hb1")
    await register(js, agents, "hb1")
    assert await agent_status(agents, "hb1") is AgentStatus.ALIVE

    stop_beating.set()
    await async_wait_for(lambda: agent_has(agents, "hb1", AgentStatus.LOST), timeout=LOSS_TIMEOUT + 20)
    heartbeats.start("hb1")
    await async_wait_for(lambda: agent_has(agents, "hb1", AgentStatus.ALIVE), timeout=20)

    history = [type(e).type_name() for e in await asyncio.to_thread(agents.load, "hb1")]
    assert history == ["agent.registered", "agent.lost", "agent.recovered"]
    lost = (await asyncio.to_thread(agents.load, "hb1"))[1]
    assert 0 < lost.last_seen <= dt.datetime.now(dt.UTC).timestamp()
    services.check()


@pytest.mark.parametrize("heartbeat_timeout", [LOSS_TIMEOUT])
async def test_an_agent_that_never_beats_is_lost(
    js: JetStreamContext, services: ServiceTasks, apps: tuple[Sessions, Agents]
) -> None:
    _, agents = apps
    await register(js, agents, "mute")
    await async_wait_for(lambda: agent_has(agents, "mute", AgentStatus.LOST), timeout=LOSS_TIMEOUT + 20)
