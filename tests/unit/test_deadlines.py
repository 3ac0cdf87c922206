"""Session timeouts: the pure ``Deadlines`` (fake clock) and the enforcing loop (fake terminate)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import uuid
from decimal import Decimal
from typing import Any

import pytest

from contracts import session as sev
from contracts import tenancy as tev
from contracts.envelope import Event, Metadata, utc_now
from contracts.session import KernelSpec
from contracts.status import Reason, SessionStatus, SessionType
from contracts.tenancy import KeypairLimits
from domain.errors import InvalidTransitionError
from services.controller.timeouts import Deadlines, KernelActivity, Postponed, enforce_timeouts, spare_busy
from tests.support.clocks import UtcClock
from tests.support.waiting import async_wait_for

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
_versions = itertools.count(1)


class Clock(UtcClock):
    def __init__(self) -> None:
        super().__init__(T0)


def event(cls: type[Event], aggregate_id: str, at: dt.datetime = T0, **fields: Any) -> Event:
    return cls(event_id=uuid.uuid4(), originator_id=aggregate_id, originator_version=next(_versions), timestamp=at,
               metadata=Metadata(actor="t", correlation_id="c"), **fields)


def requested(session_id: str, owner: str = "AK1", batch_timeout: int = 0,
              session_type: SessionType = SessionType.INTERACTIVE) -> Event:
    return event(sev.SessionRequested, session_id, owner=owner, spec=sev.SessionSpec(
        name="n", image="i", session_type=session_type, batch_timeout=batch_timeout,
        kernels=[KernelSpec(kernel_id=f"{session_id}-k", slots={"cpu": Decimal(1), "mem": Decimal(1)})]))


def status(session_id: str, value: SessionStatus, at: dt.datetime = T0) -> Event:
    return event(sev.SessionStatusChanged, session_id, at, status=value, reason=Reason.ALL_KERNELS_RUNNING)


def executed(session_id: str, at: dt.datetime) -> Event:
    return event(sev.ExecutionFinished, session_id, at, run_id="r", kernel_id=f"{session_id}-k", mode="query",
                 exit_code=0, duration_ms=1, code_digest="sha256:0")


def policy(name: str, **limits: Any) -> Event:
    return event(tev.ResourcePolicyCreated, tev.policy_id(name), name=name, limits=KeypairLimits(**limits))


def keypair(access_key: str, policy_name: str) -> Event:
    return event(tev.KeypairCreated, access_key, user="u", role=tev.Role.USER, resource_policy=policy_name)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def deadlines(clock: Clock) -> Deadlines:
    return Deadlines(clock)


def feed(deadlines: Deadlines, *events: Event) -> None:
    for e in events:
        deadlines.apply(e)


def test_max_lifetime_counts_from_running(deadlines: Deadlines, clock: Clock) -> None:
    feed(deadlines, policy("short", max_session_lifetime=60), keypair("AK1", "short"), requested("s1"))
    clock.advance(1000)
    assert deadlines.due() == [] and deadlines.next_deadline() is None, "a pending session has no deadline"
    feed(deadlines, status("s1", SessionStatus.RUNNING, clock.now))
    assert deadlines.next_deadline() == clock.now + dt.timedelta(seconds=60)
    clock.advance(59.9)
    assert deadlines.due() == []
    clock.advance(0.1)
    assert deadlines.due() == [("s1", Reason.MAX_LIFETIME)]


def test_idle_timeout_restarts_at_each_execution(deadlines: Deadlines, clock: Clock) -> None:
    feed(deadlines, policy("p", idle_timeout=30), keypair("AK1", "p"), requested("s1"), status("s1", SessionStatus.RUNNING))
    clock.advance(20)
    feed(deadlines, executed("s1", clock.now))
    clock.advance(20)
    assert deadlines.due() == []
    assert deadlines.next_deadline() == T0 + dt.timedelta(seconds=50)
    feed(deadlines, executed("s1", T0 + dt.timedelta(seconds=5)))  # a late, older record changes nothing
    clock.advance(10)
    assert deadlines.due() == [("s1", Reason.IDLE_TIMEOUT)]


def test_the_earliest_limit_wins(deadlines: Deadlines, clock: Clock) -> None:
    feed(deadlines, policy("p", idle_timeout=30, max_session_lifetime=100), keypair("AK1", "p"),
         requested("s1"), status("s1", SessionStatus.RUNNING))
    for _ in range(5):
        clock.advance(25)
        feed(deadlines, executed("s1", clock.now))
    assert deadlines.deadline("s1") == (T0 + dt.timedelta(seconds=100), Reason.MAX_LIFETIME)


def test_batch_timeout_applies_to_batch_sessions_only_and_idle_does_not(deadlines: Deadlines, clock: Clock) -> None:
    feed(deadlines, policy("p", idle_timeout=10), keypair("AK1", "p"),
         requested("batch", batch_timeout=40, session_type=SessionType.BATCH), status("batch", SessionStatus.RUNNING),
         requested("inter", batch_timeout=5), status("inter", SessionStatus.RUNNING))
    assert deadlines.deadline("batch") == (T0 + dt.timedelta(seconds=40), Reason.TASK_TIMEOUT)
    assert deadlines.deadline("inter") == (T0 + dt.timedelta(seconds=10), Reason.IDLE_TIMEOUT)
    clock.advance(40)
    assert deadlines.due() == [("batch", Reason.TASK_TIMEOUT), ("inter", Reason.IDLE_TIMEOUT)]


def test_zero_means_no_limit_and_unknown_keypairs_have_none(deadlines: Deadlines, clock: Clock) -> None:
    feed(deadlines, policy("none"), keypair("AK1", "none"), requested("s1"), status("s1", SessionStatus.RUNNING),
         requested("s2", owner="stranger"), status("s2", SessionStatus.RUNNING))
    clock.advance(10**6)
    assert deadlines.due() == [] and deadlines.next_deadline() is None


def test_policy_changes_apply_to_running_sessions(deadlines: Deadlines, clock: Clock) -> None:
    feed(deadlines, policy("a"), policy("b", max_session_lifetime=5), keypair("AK1", "a"),
         requested("s1"), status("s1", SessionStatus.RUNNING))
    assert deadlines.next_deadline() is None
    feed(deadlines, event(tev.KeypairPolicyChanged, "AK1", resource_policy="b"))
    assert deadlines.next_deadline() == T0 + dt.timedelta(seconds=5)
    feed(deadlines, event(tev.ResourcePolicyUpdated, tev.policy_id("b"), limits=KeypairLimits(max_session_lifetime=7)))
    assert deadlines.next_deadline() == T0 + dt.timedelta(seconds=7)


@pytest.mark.parametrize("end", [SessionStatus.TERMINATING, SessionStatus.TERMINATED, SessionStatus.ERROR])
def test_a_stopping_session_has_no_deadline(deadlines: Deadlines, clock: Clock, end: SessionStatus) -> None:
    feed(deadlines, policy("p", max_session_lifetime=5), keypair("AK1", "p"), requested("s1"),
         status("s1", SessionStatus.RUNNING), status("s1", end))
    clock.advance(10)
    assert deadlines.due() == [] and deadlines.next_deadline() is None


def test_done_forgets_and_defer_postpones(deadlines: Deadlines, clock: Clock) -> None:
    feed(deadlines, policy("p", max_session_lifetime=5), keypair("AK1", "p"),
         requested("s1"), status("s1", SessionStatus.RUNNING), requested("s2"), status("s2", SessionStatus.RUNNING))
    clock.advance(5)
    assert deadlines.due() == [("s1", Reason.MAX_LIFETIME), ("s2", Reason.MAX_LIFETIME)]
    deadlines.done("s1")
    deadlines.defer("s2", 3)
    assert deadlines.due() == []
    assert deadlines.next_deadline() == clock.now + dt.timedelta(seconds=3)
    clock.advance(3)
    assert deadlines.due() == [("s2", Reason.MAX_LIFETIME)]


def test_running_again_does_not_move_the_start(deadlines: Deadlines, clock: Clock) -> None:
    feed(deadlines, policy("p", max_session_lifetime=5), keypair("AK1", "p"), requested("s1"),
         status("s1", SessionStatus.RUNNING))
    clock.advance(3)
    feed(deadlines, status("s1", SessionStatus.RUNNING, clock.now))
    assert deadlines.next_deadline() == T0 + dt.timedelta(seconds=5)


def test_a_shortened_policy_brings_a_deadline_forward_past_older_ones(deadlines: Deadlines, clock: Clock) -> None:
    feed(deadlines, policy("long", max_session_lifetime=100), policy("short", max_session_lifetime=10),
         keypair("AK1", "long"), keypair("AK2", "long"), requested("s1"), status("s1", SessionStatus.RUNNING),
         requested("s2", owner="AK2"), status("s2", SessionStatus.RUNNING))
    feed(deadlines, event(tev.KeypairPolicyChanged, "AK2", resource_policy="short"))
    clock.advance(10)
    assert deadlines.due() == [("s2", Reason.MAX_LIFETIME)]
    feed(deadlines, event(tev.KeypairPolicyChanged, "AK2", resource_policy="long"))
    assert deadlines.due() == [] and deadlines.next_deadline() == T0 + dt.timedelta(seconds=100)


class EvaluationCount(Deadlines):
    """Counts how many sessions' deadlines are worked out."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.evaluated = 0

    def deadline(self, session_id: str) -> tuple[dt.datetime, Reason] | None:
        self.evaluated += 1
        return super().deadline(session_id)


def test_an_event_costs_the_same_with_ten_thousand_sessions_running(clock: Clock) -> None:
    """The enforcing loop asks ``due`` and ``next_deadline`` after every event; they looked at every
    running session (58 % of the controller's CPU with 2,000 running under bench_api.py)."""
    deadlines = EvaluationCount(clock)
    feed(deadlines, policy("p", idle_timeout=3600), keypair("AK1", "p"))
    for i in range(10_000):
        feed(deadlines, requested(f"s{i}"), status(f"s{i}", SessionStatus.RUNNING))
    deadlines.evaluated = 0
    clock.advance(60)
    feed(deadlines, executed("s5", clock.now))
    assert deadlines.due() == []
    assert deadlines.next_deadline() == T0 + dt.timedelta(seconds=3600)
    assert deadlines.evaluated <= 2, f"{deadlines.evaluated} sessions looked at for one event"
    clock.advance(3599)
    assert [session for session, _ in deadlines.due()] == sorted(f"s{i}" for i in range(10_000) if i != 5)


# ---------------------------------------------------------------- the loop (real time, short)


class CountingDeadlines(Deadlines):
    def __init__(self) -> None:
        super().__init__(utc_now)
        self.checks = 0

    def due(self) -> list[tuple[str, Reason]]:
        self.checks += 1
        return super().due()


async def test_the_loop_terminates_at_the_deadline_without_polling() -> None:
    deadlines = CountingDeadlines()
    changed, stop = asyncio.Event(), asyncio.Event()
    calls: list[tuple[str, Reason, dt.datetime]] = []

    async def terminate(session_id: str, reason: Reason) -> None:
        calls.append((session_id, reason, utc_now()))

    task = asyncio.create_task(enforce_timeouts(deadlines, terminate, changed, stop, longest_sleep=30))
    await asyncio.sleep(0.3)  # a quiet period: measures that the loop does not poll
    assert deadlines.checks == 1, "nothing to wait for: one check, then sleep until a change"

    started = utc_now() - dt.timedelta(seconds=0.7)  # running for 0.7 s of a 1 s lifetime
    feed(deadlines, policy("p", max_session_lifetime=1), keypair("AK1", "p"), requested("s1"),
         status("s1", SessionStatus.RUNNING, started))
    changed.set()
    await async_wait_for(lambda: calls, timeout=5)
    ((session_id, reason, when),) = calls
    assert (session_id, reason) == ("s1", Reason.MAX_LIFETIME)
    assert when >= started + dt.timedelta(seconds=1)
    assert deadlines.checks <= 4, f"woke {deadlines.checks} times"
    stop.set()
    await asyncio.wait_for(task, timeout=10)


async def test_the_loop_drops_refused_and_retries_failed_terminations() -> None:
    deadlines = Deadlines(utc_now)
    past = utc_now() - dt.timedelta(seconds=10)
    feed(deadlines, policy("p", max_session_lifetime=1), keypair("AK1", "p"),
         requested("gone"), status("gone", SessionStatus.RUNNING, past),
         requested("flaky"), status("flaky", SessionStatus.RUNNING, past))
    changed, stop = asyncio.Event(), asyncio.Event()
    attempts: dict[str, int] = {}

    async def terminate(session_id: str, reason: Reason) -> None:
        attempts[session_id] = attempts.get(session_id, 0) + 1
        if session_id == "gone":
            raise InvalidTransitionError("session gone is already TERMINATED")
        if attempts[session_id] == 1:
            raise ConnectionError("database away")

    task = asyncio.create_task(enforce_timeouts(deadlines, terminate, changed, stop, retry=0.2))
    await async_wait_for(lambda: attempts.get("flaky") == 2, timeout=5)
    assert attempts["gone"] == 1
    assert deadlines.next_deadline() is None
    stop.set()
    await asyncio.wait_for(task, timeout=10)


async def test_a_session_running_an_execution_is_not_idle() -> None:
    """Its idle deadline finds a kernel running an execution (a long computation): not terminated, and
    its idle time starts again then; once no kernel is busy, the next deadline terminates it."""
    clock = Clock()
    deadlines = Deadlines(clock)
    feed(deadlines, policy("p", idle_timeout=30, max_session_lifetime=100), keypair("AK1", "p"), requested("s1"),
         status("s1", SessionStatus.RUNNING))
    terminated: list[tuple[str, Reason]] = []
    busy = {"node": frozenset({"s1-k"})}
    asked: list[str] = []

    async def terminate(session_id: str, reason: Reason) -> None:
        terminated.append((session_id, reason))

    async def kernels_of(session_id: str) -> list[tuple[str, str]]:
        return [(f"{session_id}-k", "node")]

    async def busy_on(agent_id: str) -> KernelActivity:
        asked.append(agent_id)
        return KernelActivity(busy=busy[agent_id])

    sparing = spare_busy(terminate, deadlines, kernels_of, busy_on)
    clock.advance(30)
    assert deadlines.due() == [("s1", Reason.IDLE_TIMEOUT)]
    with pytest.raises(Postponed, match="s1-k is running an execution"):
        await sparing("s1", Reason.IDLE_TIMEOUT)
    assert terminated == [] and deadlines.due() == []
    assert deadlines.next_deadline() == T0 + dt.timedelta(seconds=60), "idle from the moment it was found busy"

    await sparing("s1", Reason.MAX_LIFETIME)  # a busy session still ends at its lifetime
    assert terminated == [("s1", Reason.MAX_LIFETIME)] and asked == ["node"], "only an idle timeout asks"

    busy["node"] = frozenset()
    clock.advance(30)
    await sparing("s1", Reason.IDLE_TIMEOUT)
    assert terminated[-1] == ("s1", Reason.IDLE_TIMEOUT)


async def test_traffic_to_a_sessions_apps_is_activity_when_it_moved() -> None:
    """The heartbeat says when a kernel's apps last had traffic: at the idle deadline, traffic since the last
    activity moves the idle time to start from it; traffic as old as the idle time does not spare the session,
    and an agent's clock ahead of the controller's counts as now, never later."""
    clock = Clock()
    deadlines = Deadlines(clock)
    feed(deadlines, policy("p", idle_timeout=30), keypair("AK1", "p"), requested("s1"),
         status("s1", SessionStatus.RUNNING))
    terminated: list[tuple[str, Reason]] = []
    traffic: dict[str, float] = {}

    async def terminate(session_id: str, reason: Reason) -> None:
        terminated.append((session_id, reason))

    async def kernels_of(session_id: str) -> list[tuple[str, str]]:
        return [(f"{session_id}-k", "node")]

    async def activity_on(agent_id: str) -> KernelActivity:
        return KernelActivity(app_traffic=dict(traffic))

    sparing = spare_busy(terminate, deadlines, kernels_of, activity_on)
    traffic["s1-k"] = (T0 + dt.timedelta(seconds=20)).timestamp()
    clock.advance(30)
    with pytest.raises(Postponed, match="s1-k's apps had traffic"):
        await sparing("s1", Reason.IDLE_TIMEOUT)
    assert deadlines.next_deadline() == T0 + dt.timedelta(seconds=50), "idle from the traffic on"

    clock.advance(20)  # T0 + 50: no traffic since T0 + 20
    await sparing("s1", Reason.IDLE_TIMEOUT)
    assert terminated == [("s1", Reason.IDLE_TIMEOUT)]

    feed(deadlines, requested("s2"), status("s2", SessionStatus.RUNNING, T0 + dt.timedelta(seconds=50)))
    traffic["s2-k"] = (T0 + dt.timedelta(hours=1)).timestamp()  # the agent's clock is an hour ahead
    clock.advance(30)
    with pytest.raises(Postponed):
        await sparing("s2", Reason.IDLE_TIMEOUT)
    assert deadlines.deadline("s2") == (T0 + dt.timedelta(seconds=110), Reason.IDLE_TIMEOUT), "at most now"

    clock.advance(30)  # T0 + 110: due again; an agent's word that is no time spares nothing and breaks nothing
    traffic["s2-k"] = float("nan")
    await sparing("s2", Reason.IDLE_TIMEOUT)
    assert terminated[-1] == ("s2", Reason.IDLE_TIMEOUT)


async def test_the_loop_leaves_a_postponed_session_to_its_moved_deadline() -> None:
    deadlines = Deadlines(utc_now)
    past = utc_now() - dt.timedelta(seconds=10)
    feed(deadlines, policy("p", idle_timeout=1), keypair("AK1", "p"), requested("s1"),
         status("s1", SessionStatus.RUNNING, past))
    changed, stop = asyncio.Event(), asyncio.Event()
    attempts: list[str] = []

    async def terminate(session_id: str, reason: Reason) -> None:
        attempts.append(session_id)
        if len(attempts) == 1:
            deadlines.active(session_id)
            raise Postponed("busy")

    task = asyncio.create_task(enforce_timeouts(deadlines, terminate, changed, stop))
    await async_wait_for(lambda: len(attempts) == 2, timeout=10)
    assert deadlines.next_deadline() is None, "terminated the second time: forgotten"
    stop.set()
    await asyncio.wait_for(task, timeout=10)
