"""The scheduler service on real NATS and PostgreSQL, fed by the real relay."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from nats.js import JetStreamContext

from contracts import commands as c
from contracts.session import KernelSpec, SessionSpec
from contracts.status import Reason, SessionStatus
from services.application.agents import Agents
from services.application.context import make_context
from services.application.sessions import Sessions
from services.common.settings import Settings
from services.relay.main import run_relay
from services.scheduler.checkpoint import checkpoint_bucket, decode_checkpoint
from services.scheduler.checkpoint_chunks import read_chunked
from services.scheduler.main import run_scheduler
from tests.support.publish import ServiceTasks, service_tasks
from tests.support.waiting import async_wait_for

GIB = Decimal(1024**3)


@pytest.fixture
def settings(nats_url: str, pg_dsn: str) -> Settings:
    return Settings(nats_url=nats_url, pg_dsn=pg_dsn)


@pytest.fixture
async def services(
    js: JetStreamContext, settings: Settings, apps: tuple[Sessions, Agents]
) -> AsyncIterator[ServiceTasks]:
    # ``apps`` first: it creates the event store's tables before any service opens the store
    async with service_tasks() as tasks:
        tasks.start("relay", lambda stop: run_relay(settings, stop))
        yield tasks


def new_id() -> str:
    return uuid.uuid4().hex[:12]


async def request(sessions: Sessions, cpu: int, dependencies: tuple[str, ...] = ()) -> str:
    session_id = new_id()
    command = c.RequestSession(
        owner="alice", spec=SessionSpec(
            name="s", image="python:3.11",
            kernels=[KernelSpec(kernel_id=f"{session_id}-k", slots={"cpu": Decimal(cpu), "mem": GIB})],
            dependencies=list(dependencies),
        ),
    )
    await asyncio.to_thread(sessions.request, session_id, command, make_context("test"))
    return session_id


async def register(agents: Agents, agent_id: str, cpu: int = 4) -> None:
    command = c.RegisterAgent(capacity={"cpu": Decimal(cpu), "mem": 8 * GIB}, backend="simulated", hostname="h")
    await asyncio.to_thread(agents.handle, agent_id, command, make_context("test"))


async def status_is(sessions: Sessions, session_id: str, status: SessionStatus) -> bool:
    state = await asyncio.to_thread(sessions.get, session_id)
    return state is not None and state.status is status


async def wait_status(sessions: Sessions, session_id: str, status: SessionStatus, timeout: float = 10) -> None:
    await async_wait_for(lambda: status_is(sessions, session_id, status), timeout=timeout,
                         message=f"session {session_id} did not become {status.value}")


async def test_places_what_fits_and_leaves_a_too_big_session_pending(
    services: ServiceTasks, settings: Settings, apps: tuple[Sessions, Agents], caplog: pytest.LogCaptureFixture
) -> None:
    sessions, agents = apps
    caplog.set_level(logging.INFO, logger="services.scheduler.passes")
    await register(agents, "a1", cpu=4)
    services.start("scheduler", lambda stop: run_scheduler(settings, stop))
    big = await request(sessions, cpu=64)
    small = await request(sessions, cpu=1)

    await wait_status(sessions, small, SessionStatus.SCHEDULED)

    assert await status_is(sessions, big, SessionStatus.PENDING), "a pass after the big request left it pending"
    reason = await asyncio.to_thread(lambda: sessions.load(big)[-1])
    assert (type(reason).__name__, reason.code) == ("SessionPendingReasonChanged", "too-large")  # type: ignore[attr-defined]
    state = await asyncio.to_thread(sessions.get, small)
    assert state is not None and state.kernels[0].agent_id == "a1"
    agent = await asyncio.to_thread(agents.get, "a1")
    assert agent is not None and list(agent.allocations) == [f"{small}-k"]
    services.check()


async def test_waits_for_an_agent_then_for_released_capacity(
    services: ServiceTasks, settings: Settings, apps: tuple[Sessions, Agents]
) -> None:
    sessions, agents = apps
    services.start("scheduler", lambda stop: run_scheduler(settings, stop))
    first = await request(sessions, cpu=4)
    second = await request(sessions, cpu=4)

    await register(agents, "a1", cpu=4)
    await wait_status(sessions, first, SessionStatus.SCHEDULED)
    assert await status_is(sessions, second, SessionStatus.PENDING)

    # the first session's kernel ends: the agent's slots are released and the second fits
    exited = c.MarkKernelExited(kernel_id=f"{first}-k", exit_code=0, reason=Reason.TASK_FINISHED)
    await asyncio.to_thread(sessions.report, first, exited, make_context("test"))
    await wait_status(sessions, second, SessionStatus.SCHEDULED)
    agent = await asyncio.to_thread(agents.get, "a1")
    assert agent is not None and list(agent.allocations) == [f"{second}-k"]


async def test_a_restarted_scheduler_rebuilds_its_snapshot_and_never_places_twice(
    services: ServiceTasks, settings: Settings, apps: tuple[Sessions, Agents]
) -> None:
    sessions, agents = apps
    await register(agents, "a1", cpu=4)
    placed = await request(sessions, cpu=1)
    services.start("scheduler", lambda stop: run_scheduler(settings, stop))
    await wait_status(sessions, placed, SessionStatus.SCHEDULED)
    await services.stop("scheduler")
    history = len(await asyncio.to_thread(sessions.load, placed))

    services.start("scheduler", lambda stop: run_scheduler(settings, stop))
    later = await request(sessions, cpu=1)
    await wait_status(sessions, later, SessionStatus.SCHEDULED)

    assert len(await asyncio.to_thread(sessions.load, placed)) == history
    agent = await asyncio.to_thread(agents.get, "a1")
    assert agent is not None and sorted(agent.allocations) == sorted([f"{placed}-k", f"{later}-k"])
    assert agent.free["cpu"] == Decimal(2)


async def test_a_restarted_scheduler_starts_from_its_checkpoint_and_follows_only_the_tail(
    services: ServiceTasks, settings: Settings, apps: tuple[Sessions, Agents], js: JetStreamContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sessions, agents = apps
    caplog.set_level(logging.INFO, logger="services.scheduler.checkpoint")
    await register(agents, "a1", cpu=4)
    placed = await request(sessions, cpu=1)
    waiting = await request(sessions, cpu=64)  # too large: pending across the restart
    services.start("scheduler", lambda stop: run_scheduler(settings, stop))
    await wait_status(sessions, placed, SessionStatus.SCHEDULED)
    await services.stop("scheduler")  # writes a last checkpoint
    kv = await checkpoint_bucket(js)
    checkpoint = decode_checkpoint(await read_chunked(kv) or b"")
    pending = [p.request.session_id for p in checkpoint.state.pending]
    # the stop may come before the follow saw the placement the scheduler saved: `placed` is then still pending at
    # the checkpoint's sequence, and the tail after it (followed at the restart) holds its SessionScheduled
    assert checkpoint.stream_seq > 0 and waiting in pending and set(pending) <= {placed, waiting}

    caplog.clear()
    later = await request(sessions, cpu=1)
    services.start("scheduler", lambda stop: run_scheduler(settings, stop))
    await wait_status(sessions, later, SessionStatus.SCHEDULED)
    assert f"scheduler checkpoint at EVENTS sequence {checkpoint.stream_seq}" in caplog.text
    assert "replaying EVENTS from its start" not in caplog.text
    assert await status_is(sessions, waiting, SessionStatus.PENDING)
    agent = await asyncio.to_thread(agents.get, "a1")
    assert agent is not None and sorted(agent.allocations) == sorted([f"{placed}-k", f"{later}-k"])
    services.check()


async def test_a_dependency_that_finished_before_the_request_is_looked_up_in_the_store(
    services: ServiceTasks, settings: Settings, apps: tuple[Sessions, Agents]
) -> None:
    sessions, agents = apps
    await register(agents, "a1", cpu=4)
    services.start("scheduler", lambda stop: run_scheduler(settings, stop))
    done, failed = await request(sessions, cpu=1), await request(sessions, cpu=1)
    await wait_status(sessions, done, SessionStatus.SCHEDULED)
    await wait_status(sessions, failed, SessionStatus.SCHEDULED)
    for session_id, reason in ((done, Reason.TASK_FINISHED), (failed, Reason.TASK_FAILED)):
        exited = c.MarkKernelExited(kernel_id=f"{session_id}-k", exit_code=0, reason=reason)
        await asyncio.to_thread(sessions.report, session_id, exited, make_context("test"))
        await wait_status(sessions, session_id, SessionStatus.TERMINATED)

    # requested after they finished: the snapshot keeps no outcome of a session nobody waits on
    after_done = await request(sessions, cpu=1, dependencies=(done,))
    after_failed = await request(sessions, cpu=1, dependencies=(failed,))
    await wait_status(sessions, after_done, SessionStatus.SCHEDULED)

    async def held() -> bool:
        last = (await asyncio.to_thread(sessions.load, after_failed))[-1]
        return getattr(last, "code", None) == "dependency" and "failed" in getattr(last, "message", "")

    await async_wait_for(held, timeout=10, message="the session after a failed one was not held")
    assert await status_is(sessions, after_failed, SessionStatus.PENDING)
    services.check()


async def test_a_lost_agent_gets_nothing_until_it_recovers(
    services: ServiceTasks, settings: Settings, apps: tuple[Sessions, Agents], caplog: pytest.LogCaptureFixture
) -> None:
    sessions, agents = apps
    caplog.set_level(logging.INFO, logger="services.scheduler.passes")
    await register(agents, "a1")
    await asyncio.to_thread(agents.handle, "a1", c.MarkAgentLost(last_seen=0.0), make_context("test"))
    services.start("scheduler", lambda stop: run_scheduler(settings, stop))
    session = await request(sessions, cpu=1)

    def reason() -> str | None:
        last = sessions.load(session)[-1]
        return getattr(last, "message", None)

    await async_wait_for(lambda: asyncio.to_thread(reason), timeout=10)
    assert await asyncio.to_thread(reason) == "no alive agent in resource group 'default'"
    assert await status_is(sessions, session, SessionStatus.PENDING)

    await asyncio.to_thread(agents.handle, "a1", c.MarkAgentRecovered(), make_context("test"))
    await wait_status(sessions, session, SessionStatus.SCHEDULED)
