"""Stuck sessions: the pure ``StuckDeadlines`` (fake clock) — which session stayed too long in a
transitional state, and when the next one will have."""

from __future__ import annotations

import datetime as dt

import pytest

from contracts import session as sev
from contracts.session import KernelPlacement
from contracts.status import Reason, SessionStatus
from services.common.settings import Settings
from services.controller.stuck import StuckDeadlines
from tests.unit.test_deadlines import T0, Clock, event, status

LIMITS = Settings(stuck_scheduled_timeout=10, stuck_preparing_timeout=60, stuck_creating_timeout=20,
                  stuck_terminating_timeout=30).stuck_deadlines()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stuck(clock: Clock) -> StuckDeadlines:
    return StuckDeadlines(LIMITS, clock)


def scheduled(session_id: str) -> sev.SessionScheduled:
    return event(sev.SessionScheduled, session_id, placements=[KernelPlacement(kernel_id="k", agent_id="a")])


def progressed(session_id: str, at: dt.datetime) -> sev.KernelProgressed:
    return event(sev.KernelProgressed, session_id, at, kernel_id="k", detail="1/2 layers")


def test_each_transitional_state_has_its_own_deadline(stuck: StuckDeadlines, clock: Clock) -> None:
    stuck.apply(scheduled("s1"))
    assert stuck.next_deadline() == T0 + dt.timedelta(seconds=10)
    clock.advance(9)
    assert stuck.due() == []
    stuck.apply(status("s1", SessionStatus.PREPARING, clock.now))
    clock.advance(59)
    assert stuck.due() == []
    clock.advance(1)
    assert stuck.due() == [("s1", Reason.TRANSITION_TIMEOUT)]
    assert stuck.stay("s1") == (SessionStatus.PREPARING, 60)


def test_pull_progress_restarts_the_preparing_clock(stuck: StuckDeadlines, clock: Clock) -> None:
    stuck.apply(status("s1", SessionStatus.PREPARING))
    clock.advance(50)
    stuck.apply(progressed("s1", clock.now))
    clock.advance(50)
    assert stuck.due() == []
    clock.advance(10)
    assert stuck.due() == [("s1", Reason.TRANSITION_TIMEOUT)]


@pytest.mark.parametrize("settled", [SessionStatus.RUNNING, SessionStatus.TERMINATED, SessionStatus.ERROR])
def test_a_settled_session_is_never_stuck(stuck: StuckDeadlines, clock: Clock, settled: SessionStatus) -> None:
    stuck.apply(status("s1", SessionStatus.CREATING))
    stuck.apply(status("s1", settled))
    clock.advance(10_000)
    assert stuck.due() == [] and stuck.next_deadline() is None and stuck.stay("s1") is None


def test_terminating_has_a_deadline_and_zero_means_none(clock: Clock) -> None:
    limits = Settings(stuck_scheduled_timeout=0, stuck_preparing_timeout=0, stuck_creating_timeout=0,
                      stuck_terminating_timeout=5).stuck_deadlines()
    stuck = StuckDeadlines(limits, clock)
    stuck.apply(scheduled("s1"))
    stuck.apply(status("s2", SessionStatus.TERMINATING))
    clock.advance(5)
    assert stuck.due() == [("s2", Reason.TRANSITION_TIMEOUT)]


def test_defer_postpones_and_done_forgets(stuck: StuckDeadlines, clock: Clock) -> None:
    stuck.apply(status("s1", SessionStatus.CREATING))
    clock.advance(20)
    stuck.defer("s1", 5)
    assert stuck.due() == []
    clock.advance(5)
    assert stuck.due() == [("s1", Reason.TRANSITION_TIMEOUT)]
    stuck.done("s1")
    assert stuck.due() == []


def test_a_negative_deadline_is_refused() -> None:
    with pytest.raises(ValueError, match="BERTH_STUCK_PREPARING_TIMEOUT must not be negative"):
        Settings(stuck_preparing_timeout=-1).stuck_deadlines()


class EvaluationCount(StuckDeadlines):
    def __init__(self, clock: Clock) -> None:
        super().__init__(LIMITS, clock)
        self.evaluated = 0

    def deadline(self, session_id: str) -> dt.datetime | None:
        self.evaluated += 1
        return super().deadline(session_id)


def test_a_transition_costs_the_same_with_ten_thousand_sessions_in_flight(clock: Clock) -> None:
    stuck = EvaluationCount(clock)
    for i in range(10_000):
        stuck.apply(status(f"s{i}", SessionStatus.PREPARING, T0 + dt.timedelta(milliseconds=i)))
    stuck.evaluated = 0
    stuck.apply(progressed("s0", T0 + dt.timedelta(seconds=1)))
    stuck.apply(status("s1", SessionStatus.RUNNING))
    assert stuck.due() == []
    assert stuck.next_deadline() == T0 + dt.timedelta(seconds=60, milliseconds=2)
    assert stuck.evaluated <= 2, f"{stuck.evaluated} sessions looked at for two events"
    clock.advance(71)
    assert [session for session, _ in stuck.due()] == sorted(f"s{i}" for i in range(10_000) if i != 1)
