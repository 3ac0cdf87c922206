"""The scheduler's snapshot, passes and one-transaction apply, on the in-memory event store."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from contracts import commands as c
from contracts.envelope import Event
from contracts.session import KernelSpec
from contracts.status import AgentStatus, SessionStatus
from domain import agent as agent_domain
from domain import session as session_domain
from services.common.context import make_context
from services.common.store import ConcurrencyError
from services.scheduler.passes import PassRunner
from services.scheduler.scheduling import Scheduling
from services.scheduler.snapshot import Snapshot
from tests.support.waiting import async_wait_for


@pytest.fixture
def app() -> Scheduling:
    scheduling = Scheduling(None)
    yield scheduling
    scheduling.close()


def record_session(app: Scheduling, session_id: str, cpu: int = 1, kernels: int = 1) -> list[Event]:
    command = c.RequestSession(
        name=session_id, owner="alice", image="python:3.11",
        kernels=[KernelSpec(kernel_id=f"{session_id}-k{i}", slots={"cpu": Decimal(cpu), "mem": Decimal(1024)})
                 for i in range(kernels)],
    )
    events = session_domain.decide(None, command, make_context("test"), session_id)
    app.record(events)
    return events


def record_agent(app: Scheduling, agent_id: str, command: c.Command | None = None) -> list[Event]:
    command = command or c.RegisterAgent(capacity={"cpu": Decimal(4), "mem": Decimal(8 * 1024**3)}, backend="sim", hostname="h")
    state = agent_domain.replay(app.load(agent_id))
    events = agent_domain.decide(state, command, make_context("test"), agent_id)
    app.record(events)
    return events


def snapshot_of(app: Scheduling) -> Snapshot:
    """Returns a snapshot built from every event in the store, as the stream would deliver them."""
    snapshot = Snapshot()
    for notification in app.recorder.select_notifications(start=1, limit=10_000):
        snapshot.apply(app.mapper.to_domain_event(notification))
    return snapshot


def runner_for(app: Scheduling, snapshot: Snapshot) -> PassRunner:
    async def place(plan):  # type: ignore[no-untyped-def]
        return await asyncio.to_thread(app.place, plan, make_context("scheduler"))

    return PassRunner(snapshot, place)


def status(app: Scheduling, session_id: str) -> SessionStatus:
    state = session_domain.replay(app.load(session_id))
    assert state is not None
    return state.status


async def test_a_pass_places_pending_sessions_in_one_transaction(app: Scheduling) -> None:
    record_agent(app, "a1")
    for sid in ("s1", "s2", "s3"):
        record_session(app, sid, cpu=2)
    before = app.position()
    calls: list[int] = []
    record = app.record
    app.record = lambda events: calls.append(len(events)) or record(events)  # type: ignore[method-assign]

    outcome = await runner_for(app, snapshot_of(app)).run_pass()

    assert outcome is not None
    assert (outcome.placed, outcome.skipped, outcome.gone) == (["s1", "s2"], {}, [])
    assert calls == [4], "two SessionScheduled and two KernelAssigned, saved together"
    assert outcome.position == before + 4
    assert [status(app, s) for s in ("s1", "s2", "s3")] == [SessionStatus.SCHEDULED] * 2 + [SessionStatus.PENDING]
    agent = agent_domain.replay(app.load("a1"))
    assert agent is not None and sorted(agent.allocations) == ["s1-k0", "s2-k0"]
    assert outcome.agents["a1"] == agent


async def test_the_snapshot_follows_what_the_pass_applied(app: Scheduling) -> None:
    record_agent(app, "a1")
    record_session(app, "s1", cpu=4)
    snapshot = snapshot_of(app)
    runner = runner_for(app, snapshot)
    await runner.run_pass()
    assert snapshot.pending() == []
    assert snapshot.agents()[0].free["cpu"] == Decimal(0)
    assert await runner.run_pass() is None, "nothing left to place"


async def test_a_session_cancelled_meanwhile_is_skipped_alone(app: Scheduling) -> None:
    record_agent(app, "a1")
    record_session(app, "gone")
    record_session(app, "kept")
    snapshot = snapshot_of(app)
    cancelled = session_domain.decide(session_domain.replay(app.load("gone")), c.TerminateSession(), make_context("t"), "gone")
    app.record(cancelled)

    outcome = await runner_for(app, snapshot).run_pass()

    assert outcome is not None
    assert (outcome.placed, outcome.gone) == (["kept"], ["gone"])
    assert status(app, "gone") is SessionStatus.CANCELLED
    assert [p.session_id for p in snapshot.pending()] == []


async def test_a_stale_snapshot_is_refreshed_and_replanned(app: Scheduling) -> None:
    record_agent(app, "full")
    record_agent(app, "spare")
    record_session(app, "s1", cpu=4)
    snapshot = snapshot_of(app)
    # "full" fills up behind the snapshot's back
    record_agent(app, "full", c.AssignKernel(kernel_id="x", session_id="other", image="i",
                                             slots={"cpu": Decimal(4), "mem": Decimal(1)}))
    runner = runner_for(app, snapshot)

    first = await runner.run_pass()
    assert first is not None and "InsufficientCapacityError" in first.skipped["s1"]
    second = await runner.run_pass()

    assert second is not None and second.placed == ["s1"]
    state = session_domain.replay(app.load("s1"))
    assert state is not None and state.kernels[0].agent_id == "spare"


async def test_a_lost_agent_gets_nothing(app: Scheduling) -> None:
    record_agent(app, "a1")
    record_agent(app, "a1", c.MarkAgentLost(last_seen=0.0))
    record_session(app, "s1")
    snapshot = snapshot_of(app)
    assert snapshot.agents()[0].status is AgentStatus.LOST
    assert await runner_for(app, snapshot).run_pass() is None
    assert status(app, "s1") is SessionStatus.PENDING


async def test_kernels_of_a_session_are_placed_together(app: Scheduling) -> None:
    record_agent(app, "a1")
    record_session(app, "s1", cpu=2, kernels=2)
    outcome = await runner_for(app, snapshot_of(app)).run_pass()
    assert outcome is not None and outcome.placed == ["s1"]
    agent = agent_domain.replay(app.load("a1"))
    assert agent is not None and sorted(agent.allocations) == ["s1-k0", "s1-k1"]


async def test_a_conflict_reloads_and_retries(app: Scheduling) -> None:
    record_agent(app, "a1")
    record_session(app, "s1")
    record = app.record
    attempts: list[int] = []

    def flaky(events):  # type: ignore[no-untyped-def]
        attempts.append(len(events))
        if len(attempts) == 1:
            raise ConcurrencyError("someone else wrote first")
        return record(events)

    app.record = flaky  # type: ignore[method-assign]
    outcome = await runner_for(app, snapshot_of(app)).run_pass()
    assert outcome is not None and outcome.placed == ["s1"]
    assert attempts == [2, 2]


async def test_a_failed_pass_is_retried_later(app: Scheduling) -> None:
    record_agent(app, "a1")
    record_session(app, "s1")
    failures = [RuntimeError("store down")]

    async def place(plan):  # type: ignore[no-untyped-def]
        if failures:
            raise failures.pop()
        return await asyncio.to_thread(app.place, plan, make_context("scheduler"))

    runner = PassRunner(snapshot_of(app), place)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(runner.run(stop, ready))
    ready.set()
    try:
        await async_wait_for(lambda: status(app, "s1") is SessionStatus.SCHEDULED, timeout=5)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert runner.passes >= 2


async def test_runner_waits_for_the_snapshot_and_stops(app: Scheduling) -> None:
    record_agent(app, "a1")
    record_session(app, "s1")
    runner = runner_for(app, snapshot_of(app))
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(runner.run(stop, ready))
    await asyncio.sleep(0)
    assert runner.passes == 0 and not task.done()
    ready.set()
    await async_wait_for(lambda: status(app, "s1") is SessionStatus.SCHEDULED, timeout=5)
    stop.set()
    await asyncio.wait_for(task, 5)


def test_snapshot_ignores_events_older_than_its_state(app: Scheduling) -> None:
    registered = record_agent(app, "a1")
    assigned = record_agent(app, "a1", c.AssignKernel(kernel_id="k", session_id="s", image="i",
                                                      slots={"cpu": Decimal(1), "mem": Decimal(1)}))
    snapshot = Snapshot()
    assert snapshot.apply(registered[0]) is True
    assert snapshot.apply(registered[0]) is False
    fresh = agent_domain.replay(app.load("a1"))
    assert fresh is not None
    snapshot.refresh({"a1": fresh}, [])
    assert snapshot.apply(assigned[0]) is False, "already part of the fresh state"
    agent = snapshot.agent("a1")
    assert agent is not None and agent.version == 2 and "k" in agent.allocations


def test_snapshot_tracks_pending_sessions_in_order(app: Scheduling) -> None:
    snapshot = Snapshot()
    for sid in ("b", "a", "c"):
        assert snapshot.apply(record_session(app, sid)[0]) is True
    cancel = session_domain.decide(session_domain.replay(app.load("a")), c.TerminateSession(), make_context("t"), "a")
    assert snapshot.apply(cancel[0]) is False
    assert [p.session_id for p in snapshot.pending()] == ["b", "c"]
    assert snapshot.pending()[0].kernels == (("b-k0", {"cpu": Decimal(1), "mem": Decimal(1024)}),)
