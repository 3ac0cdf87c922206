"""The scheduler's snapshot, passes and one-transaction record, on the in-memory event store."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Mapping, Sequence

import msgspec
import pytest

from contracts import commands as c
from contracts.envelope import Event
from contracts.quota import QuotaScope, quota_id
from contracts.session import KernelSpec, SessionSpec
from contracts.status import Reason, SessionStatus
from domain import agent as agent_domain
from domain import quota as quota_domain
from domain import session as session_domain
from services.application.context import make_context
from services.common.store import ConcurrencyError
from services.scheduler.passes import PassRunner
from services.application.scheduling import Scheduling
from services.scheduler.snapshot import Snapshot
from tests.support.waiting import async_wait_for

GIB = Decimal(1024**3)


@pytest.fixture
def app() -> Scheduling:
    scheduling = Scheduling(None)
    yield scheduling
    scheduling.close()


def record_session(app: Scheduling, session_id: str, cpu: int = 1, kernels: int = 1, **fields: object) -> list[Event]:
    command = c.RequestSession(
        owner="alice", spec=SessionSpec(
            name=session_id, image="python:3.11",
            kernels=[KernelSpec(kernel_id=f"{session_id}-k{i}", slots={"cpu": Decimal(cpu), "mem": GIB})
                     for i in range(kernels)],
            **fields,  # type: ignore[arg-type]
        ),
    )
    events = session_domain.decide(None, command, make_context("test"), session_id)
    app.record(events)
    return events


def record_agent(app: Scheduling, agent_id: str, command: c.Command | None = None) -> list[Event]:
    command = command or c.RegisterAgent(capacity={"cpu": Decimal(4), "mem": 8 * GIB}, backend="sim", hostname="h")
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


def runner_for(app: Scheduling, snapshot: Snapshot, record=None) -> PassRunner:  # type: ignore[no-untyped-def]
    async def do_record(events: Sequence[Event]) -> int | None:
        return await asyncio.to_thread(record or app.record_pass, events)

    async def catch_up(known: Mapping[str, int]) -> list[Event]:
        return await asyncio.to_thread(app.newer_than, dict(known))

    return PassRunner(snapshot, do_record, catch_up, lambda: make_context("scheduler"))


def status(app: Scheduling, session_id: str) -> SessionStatus:
    state = session_domain.replay(app.load(session_id))
    assert state is not None
    return state.status


def holding(app: Scheduling, scope: QuotaScope, name: str) -> list[str]:
    state = quota_domain.replay(app.load(quota_id(scope, name)))
    return sorted(state.holding) if state is not None else []


async def test_a_pass_records_placements_and_quota_in_one_transaction(app: Scheduling) -> None:
    record_agent(app, "a1")
    for sid in ("s1", "s2", "s3"):
        record_session(app, sid, cpu=2)
    before = app.position()
    calls: list[int] = []

    def record(events: Sequence[Event]) -> int | None:
        calls.append(len(events))
        return app.record_pass(events)

    decisions = await runner_for(app, snapshot_of(app), record).run_pass()

    assert decisions is not None and decisions.placed == ["s1", "s2"]
    # 2 SessionScheduled + 2 KernelAssigned + 3 QuotaConsumed (keypair, project, domain) + 1 pending reason (s3)
    assert calls == [8]
    assert app.position() == before + 8
    assert [status(app, s) for s in ("s1", "s2", "s3")] == [SessionStatus.SCHEDULED] * 2 + [SessionStatus.PENDING]
    agent = agent_domain.replay(app.load("a1"))
    assert agent is not None and sorted(agent.allocations) == ["s1-k0", "s2-k0"]
    for scope, name in ((QuotaScope.KEYPAIR, "alice"), (QuotaScope.PROJECT, "default"), (QuotaScope.DOMAIN, "default")):
        assert holding(app, scope, name) == ["s1", "s2"]
    reason = app.load("s3")[-1]
    assert reason.code == "no-agent"  # type: ignore[attr-defined]


async def test_a_pending_reason_is_recorded_only_when_it_changes(app: Scheduling) -> None:
    record_agent(app, "a1")
    record_session(app, "big", cpu=64)
    snapshot = snapshot_of(app)
    runner = runner_for(app, snapshot)
    first = await runner.run_pass()
    assert first is not None and [type(e).__name__ for e in first.events] == ["SessionPendingReasonChanged"]
    assert await runner.run_pass() is None, "same reason: nothing recorded"
    assert snapshot.reason("big") is not None and snapshot.reason("big").code == "too-large"  # type: ignore[union-attr]


async def test_the_snapshot_follows_what_the_pass_recorded(app: Scheduling) -> None:
    record_agent(app, "a1")
    record_session(app, "s1", cpu=4)
    snapshot = snapshot_of(app)
    runner = runner_for(app, snapshot)
    await runner.run_pass()
    assert snapshot.pending() == []
    assert snapshot.view({}).agents["a1"].occupied["cpu"] == Decimal(4)
    assert snapshot.view({}).usage[(QuotaScope.KEYPAIR, "alice")].sessions == 1
    assert await runner.run_pass() is None, "nothing left to place"


async def test_a_session_cancelled_behind_the_snapshot_is_left_out_and_the_rest_placed_in_the_same_pass(app: Scheduling) -> None:
    record_agent(app, "a1")
    record_session(app, "gone")
    record_session(app, "kept")
    snapshot = snapshot_of(app)
    cancelled = session_domain.decide(session_domain.replay(app.load("gone")), c.TerminateSession(), make_context("t"), "gone")
    app.record(cancelled)
    runner = runner_for(app, snapshot)

    decisions = await runner.run_pass()

    assert runner.stats.conflicts == 1, "the first transaction was refused"
    assert decisions is not None and decisions.placed == ["kept"], "the rest of the plan went ahead"
    assert [p.session_id for p in snapshot.pending()] == [], "caught up from the store"
    assert status(app, "gone") is SessionStatus.CANCELLED
    assert holding(app, QuotaScope.KEYPAIR, "alice") == ["kept"]


async def test_placements_keep_flowing_while_another_writer_changes_every_agent(app: Scheduling) -> None:
    """The livelock of issue 8: every pass touched an agent the controller had just changed, and
    each refused pass was thrown away whole. Here every transaction of the scheduler is preceded by
    another writer's change to each agent of the plan; every session is still placed."""
    for agent in ("a1", "a2"):
        record_agent(app, agent, c.RegisterAgent(capacity={"cpu": Decimal(100), "mem": 100 * GIB}, backend="sim", hostname="h"))
    for i in range(20):
        record_session(app, f"s{i}")
    snapshot = snapshot_of(app)
    interfering = {"count": 0}

    def record_after_interference(events: Sequence[Event]) -> int | None:
        if interfering["count"] < 3:  # the controller wins the race three times in a row
            interfering["count"] += 1
            for agent in sorted({e.originator_id for e in events if e.originator_id.startswith("a")}):
                record_agent(app, agent, c.AssignKernel(kernel_id=f"x{interfering['count']}-{agent}", session_id="other",
                                                        image="i", slots={"cpu": Decimal(1), "mem": GIB}))
        return app.record_pass(events)

    runner = runner_for(app, snapshot, record=record_after_interference)
    decisions = await runner.run_pass()

    assert runner.stats.conflicts == 3
    assert decisions is not None and sorted(decisions.placed) == sorted(f"s{i}" for i in range(20))
    assert all(status(app, f"s{i}") is SessionStatus.SCHEDULED for i in range(20))


async def test_an_agent_filled_behind_the_snapshot_is_reloaded_and_the_session_goes_elsewhere(app: Scheduling) -> None:
    record_agent(app, "full")
    record_session(app, "s1", cpu=4)
    snapshot = snapshot_of(app)
    record_agent(app, "spare")
    snapshot.apply(app.load("spare")[0])
    # "full" fills up behind the snapshot's back
    record_agent(app, "full", c.AssignKernel(kernel_id="x", session_id="other", image="i", slots={"cpu": Decimal(4), "mem": GIB}))
    runner = runner_for(app, snapshot)

    assert await runner.run_pass() is None
    second = await runner.run_pass()

    assert second is not None and second.placed == ["s1"]
    state = session_domain.replay(app.load("s1"))
    assert state is not None and state.kernels[0].agent_id == "spare"


async def test_a_lost_agent_gets_nothing(app: Scheduling) -> None:
    record_agent(app, "a1")
    record_agent(app, "a1", c.MarkAgentLost(last_seen=0.0))
    record_session(app, "s1")
    decisions = await runner_for(app, snapshot_of(app)).run_pass()
    assert decisions is not None and decisions.placed == []
    assert status(app, "s1") is SessionStatus.PENDING


async def test_a_pending_timeout_cancels_the_session(app: Scheduling) -> None:
    from contracts.tenancy import ResourceGroupCreated, ResourceGroupOptions, rgroup_id
    from domain.emitting import Emitter

    group = Emitter(rgroup_id("default"), 0, make_context("t"))(
        ResourceGroupCreated, name="default", options=ResourceGroupOptions(pending_timeout=1))
    app.record([group])
    record_session(app, "s1")
    snapshot = snapshot_of(app)
    runner = runner_for(app, snapshot)
    runner._clock = lambda: app.load("s1")[0].timestamp + __import__("datetime").timedelta(seconds=2)  # type: ignore[method-assign]
    decisions = await runner.run_pass()
    assert decisions is not None and decisions.expired == ["s1"]
    last = app.load("s1")[-1]
    assert (last.status, last.reason) == (SessionStatus.CANCELLED, Reason.PENDING_TIMEOUT)  # type: ignore[attr-defined]


async def test_a_failed_pass_is_retried_later(app: Scheduling) -> None:
    record_agent(app, "a1")
    record_session(app, "s1")
    failures = [RuntimeError("store down")]

    def record(events: Sequence[Event]) -> int | None:
        if failures:
            raise failures.pop()
        return app.record_pass(events)

    runner = runner_for(app, snapshot_of(app), record)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(runner.run(stop, ready))
    ready.set()
    try:
        await async_wait_for(lambda: status(app, "s1") is SessionStatus.SCHEDULED, timeout=5)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert runner.stats.passes >= 2


async def test_a_conflicting_record_is_not_half_applied(app: Scheduling) -> None:
    record_agent(app, "a1")
    record_session(app, "s1")

    def record(events: Sequence[Event]) -> int | None:
        raise ConcurrencyError("someone else wrote first")

    snapshot = snapshot_of(app)
    assert await runner_for(app, snapshot, record).run_pass() is None
    assert [p.session_id for p in snapshot.pending()] == ["s1"]
    assert status(app, "s1") is SessionStatus.PENDING


async def test_runner_waits_for_the_snapshot_and_stops(app: Scheduling) -> None:
    record_agent(app, "a1")
    record_session(app, "s1")
    runner = runner_for(app, snapshot_of(app))
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(runner.run(stop, ready))
    await asyncio.sleep(0)
    assert runner.stats.passes == 0 and not task.done()
    ready.set()
    await async_wait_for(lambda: status(app, "s1") is SessionStatus.SCHEDULED, timeout=5)
    stop.set()
    await asyncio.wait_for(task, 5)


def test_snapshot_ignores_events_it_already_has(app: Scheduling) -> None:
    registered = record_agent(app, "a1")
    assigned = record_agent(app, "a1", c.AssignKernel(kernel_id="k", session_id="s", image="i",
                                                      slots={"cpu": Decimal(1), "mem": Decimal(1)}))
    snapshot = Snapshot()
    assert snapshot.apply(registered[0]) is True
    assert snapshot.apply(registered[0]) is False
    snapshot.apply(assigned[0])
    assert snapshot.apply(assigned[0]) is False
    agent = snapshot.agent("a1")
    assert agent is not None and agent.version == 2 and "k" in agent.allocations


def test_snapshot_tracks_pending_sessions_in_order(app: Scheduling) -> None:
    snapshot = Snapshot()
    for sid in ("b", "a", "c"):
        assert snapshot.apply(record_session(app, sid)[0]) is True
    cancel = session_domain.decide(session_domain.replay(app.load("a")), c.TerminateSession(), make_context("t"), "a")
    snapshot.apply(cancel[0])
    assert [p.session_id for p in snapshot.pending()] == ["b", "c"]
    assert snapshot.view({}).finished == {}  # nobody waits on "a": its outcome is not kept (dependencies.py)
    assert snapshot.pending()[0].kernels[0].slots == {"cpu": Decimal(1), "mem": GIB}


async def test_a_long_newly_blocked_queue_records_its_reasons_over_several_passes(
    app: Scheduling, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.scheduler import decisions as decisions_module

    monkeypatch.setattr(decisions_module, "MAX_REASONS", 2)
    for sid in ("s1", "s2", "s3", "s4", "s5"):
        record_session(app, sid)
    snapshot = snapshot_of(app)
    runner = runner_for(app, snapshot)
    first = await runner.run_pass()
    assert first is not None and len(first.events) == 2 and first.reasons_left == 3
    second = await runner.run_pass()
    third = await runner.run_pass()
    assert second is not None and third is not None and (len(second.events), len(third.events)) == (2, 1)
    assert await runner.run_pass() is None
    assert all(snapshot.reason(s) is not None for s in ("s1", "s2", "s3", "s4", "s5"))


async def test_a_session_starting_later_is_placed_when_its_time_comes_without_any_new_event(app: Scheduling) -> None:
    import datetime as dt

    from contracts.status import SessionType

    record_agent(app, "a1")
    created = dt.datetime.now(dt.UTC)
    starts_at = created + dt.timedelta(seconds=0.5)
    record_session(app, "later", session_type=SessionType.BATCH, startup_command="true", starts_at=starts_at)
    runner = runner_for(app, snapshot_of(app))
    # The runner's clock stands still at ``created`` until its first pass has been seen, so that pass
    # finds the session early however slowly this machine runs; then it is the real clock. The timer
    # that pass set (starts_at - created, in real time) is what must wake the runner.
    frozen = True
    runner._clock = lambda: created if frozen else dt.datetime.now(dt.UTC)  # type: ignore[method-assign]
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(runner.run(stop, ready))
    ready.set()
    try:
        await async_wait_for(lambda: runner.stats.passes >= 1, timeout=10)
        assert status(app, "later") is SessionStatus.PENDING
        assert app.load("later")[-1].code == "starts-at"  # type: ignore[attr-defined]
        frozen = False
        await async_wait_for(lambda: status(app, "later") is SessionStatus.SCHEDULED, timeout=10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert app.load("later")[-1].timestamp >= starts_at, "placed no earlier than starts_at"


async def test_a_pass_places_at_most_its_cap_and_the_next_passes_place_the_rest(app: Scheduling) -> None:
    """A burst placed in one pass would make a QuotaConsumed too large to travel (issue 8): the cap
    bounds every pass's events, and the rest follow at once."""
    record_agent(app, "a1", c.RegisterAgent(capacity={"cpu": Decimal(100), "mem": 100 * GIB}, backend="sim", hostname="h"))
    for i in range(25):
        record_session(app, f"s{i}")
    snapshot = snapshot_of(app)
    runner = runner_for(app, snapshot)
    runner.max_placements = 10

    first = await runner.run_pass()
    assert first is not None and len(first.placed) == 10 and first.placements_left == 15
    assert runner._wake.is_set(), "the next pass is due at once"
    placed = len(first.placed)
    while (more := await runner.run_pass()) is not None:
        placed += len(more.placed)
    assert placed == 25
    assert all(status(app, f"s{i}") is SessionStatus.SCHEDULED for i in range(25))


async def test_a_placed_session_takes_its_startup_command_and_mounts_from_the_store(app: Scheduling) -> None:
    """The snapshot, and so its checkpoint, keeps no request's free-form fields: a pass reads them from
    the store for the sessions it places, and the agent gets them in ``KernelAssigned`` as before."""
    from contracts.mounts import MountSpec
    from services.scheduler.checkpoint import decode_checkpoint, encode_checkpoint

    record_agent(app, "a1")
    mount = MountSpec(folder_id=f"vfolder_{'0' * 32}", name="data", volume="local", target="/home/work/data",
                      permission="rw")
    record_session(app, "s1", startup_command="python train.py", mounts=[mount])
    restored = Snapshot.restore(decode_checkpoint(encode_checkpoint(snapshot_of(app).export(), 1, None)).state)

    decisions = await runner_for(app, restored).run_pass()

    assert decisions is not None and decisions.placed == ["s1"]
    assigned = app.load("a1")[-1]
    assert (assigned.image, assigned.startup_command, assigned.mounts) == (  # type: ignore[attr-defined]
        "python:3.11", "python train.py", [mount])


async def test_the_requests_of_a_pass_are_read_in_batches(app: Scheduling, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.scheduler import passes

    monkeypatch.setattr(passes, "READ_BATCH", 2)
    record_agent(app, "a1")
    for i in range(5):
        record_session(app, f"s{i}", startup_command=f"echo {i}")
    decisions = await runner_for(app, snapshot_of(app)).run_pass()
    assert decisions is not None and decisions.placed == [f"s{i}" for i in range(4)]  # the agent has 4 cpus
    commands = [getattr(e, "startup_command", None) for e in app.load("a1")[1:]]
    assert commands == [f"echo {i}" for i in range(4)]


@pytest.mark.parametrize("followed", [True, False], ids=["snapshot-has-it", "behind-the-snapshot"])
async def test_an_agent_that_destroyed_an_orphan_container_still_gets_sessions(app: Scheduling, followed: bool) -> None:
    """An agent that found a leftover container at its start records ``agent.orphan_container_destroyed``
    (a fresh instance beside an older one's containers, say). The snapshot skipped that event's state while
    counting its version, so every placement on the agent conflicted and was retried for ever: nothing placed."""
    record_agent(app, "a1")
    snapshot = snapshot_of(app) if not followed else None
    record_agent(app, "a1", c.RecordOrphanDestroyed(kernel_id="old-k0", container_id="c0", exit_code=0))
    record_session(app, "s1")
    snapshot = snapshot_of(app) if followed else snapshot
    assert snapshot is not None
    if not followed:
        snapshot.apply(app.load("s1")[0])
    runner = runner_for(app, snapshot)

    placed: list[str] = []
    for _ in range(3):  # a pass behind the snapshot catches up, the next one places
        decisions = await runner.run_pass()
        placed += decisions.placed if decisions is not None else []
        if placed:
            break
    assert placed == ["s1"]
    assert status(app, "s1") is SessionStatus.SCHEDULED


async def test_a_snapshot_counting_an_event_its_state_lacks_reloads_the_aggregate_and_places(app: Scheduling) -> None:
    """A snapshot restored from an older version's checkpoint may count an agent event it never applied (its
    version ahead of its state): the conflict's catch-up then brought nothing it would apply, for ever."""
    record_agent(app, "a1")
    before = snapshot_of(app).export()
    record_agent(app, "a1", c.RecordOrphanDestroyed(kernel_id="old-k0", container_id="c0", exit_code=0))
    record_session(app, "s1")
    counted = msgspec.structs.replace(before, versions={**before.versions, "a1": 2})
    snapshot = Snapshot.restore(counted)
    snapshot.apply(app.load("s1")[0])
    runner = runner_for(app, snapshot)

    placed: list[str] = []
    for _ in range(3):
        decisions = await runner.run_pass()
        placed += decisions.placed if decisions is not None else []
        if placed:
            break
    assert placed == ["s1"]


def test_every_event_of_an_agent_is_applied_by_the_snapshot() -> None:
    """The scheduler writes agent aggregates: an agent event its snapshot skipped would leave the state behind
    the version it writes at, and every placement on that agent would conflict."""
    from contracts import agent as agent_ev
    from contracts.catalog import ALL_EVENTS
    from services.scheduler.snapshot import SNAPSHOT_EVENTS

    agent_events = {cls for cls in ALL_EVENTS if cls.__module__ == agent_ev.__name__}
    assert agent_events and agent_events <= set(SNAPSHOT_EVENTS)
