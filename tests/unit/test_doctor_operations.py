"""``berth doctor``'s operational checks (pure): dead letters, lag, stuck sessions."""

from __future__ import annotations

import datetime as dt

from contracts.status import SessionStatus
from services.gateway.health.drift import Drift
from services.gateway.health.operations import Positions, check_dead_letters, check_lag, check_stuck

NOW = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
DEADLINES = {SessionStatus.SCHEDULED: 60.0, SessionStatus.PREPARING: 600.0, SessionStatus.CREATING: 0.0,
             SessionStatus.TERMINATING: 60.0}


def row(sid: str, status: str, since_s: float, updated_s: float | None = None) -> dict[str, object]:
    since = NOW - dt.timedelta(seconds=since_s)
    updated = NOW - dt.timedelta(seconds=since_s if updated_s is None else updated_s)
    return {"session_id": sid, "status": status, "status_since": since.isoformat(), "updated_at": updated}


def test_every_consumer_with_dead_letters_drifts() -> None:
    check, drifts = check_dead_letters({"dlq.controller": 2, "dlq.agent-a1": 0, "dlq.projector": 1})
    assert (check.name, check.subjects, check.drifts) == ("dead-letters", 3, 2)
    assert drifts == [Drift(kind="dead-letters", subject="consumer/controller", expected=0, actual=2),
                      Drift(kind="dead-letters", subject="consumer/projector", expected=0, actual=1)]
    assert check_dead_letters({})[1] == []


def test_a_consumers_letters_of_every_sender_are_one_drift() -> None:
    check, drifts = check_dead_letters({"dlq.controller": 1, "dlq.controller.a1": 2, "dlq.controller.evil": 1000})
    assert (check.subjects, check.drifts) == (1, 1)
    assert drifts == [Drift(kind="dead-letters", subject="consumer/controller", expected=0, actual=1003)]


def test_lag_of_the_relay_and_of_the_projector() -> None:
    assert check_lag(Positions(store=10, stream=10, read_models=10))[1] == []
    assert check_lag(Positions(store=10, stream=12, read_models=10))[1] == []  # newer events are not awaited
    positions = Positions(store=10, stream=7, read_models=5)
    assert (positions.relay_lag, positions.projector_lag) == (3, 2)
    assert check_lag(positions)[1] == [Drift(kind="relay-lag", subject="stream/EVENTS", expected=10, actual=7),
                                       Drift(kind="projector-lag", subject="read-models", expected=7, actual=5)]


def test_a_session_past_its_status_deadline_is_stuck() -> None:
    rows = [row("ok", "SCHEDULED", 30), row("late", "SCHEDULED", 61), row("run", "RUNNING", 10_000),
            row("nolimit", "CREATING", 10_000), row("ending", "TERMINATING", 120)]
    check, drifts = check_stuck(rows, DEADLINES, NOW)
    assert (check.subjects, check.drifts) == (3, 2)
    assert [(d.subject, d.actual) for d in drifts] == [("session/late", "SCHEDULED for 61 s"),
                                                       ("session/ending", "TERMINATING for 120 s")]
    assert drifts[0].expected == "out of SCHEDULED within 60 s"


def test_pull_progress_keeps_a_preparing_session_alive() -> None:
    progressing = row("pulling", "PREPARING", since_s=5_000, updated_s=30)
    silent = row("silent", "PREPARING", since_s=5_000)
    assert [d.subject for d in check_stuck([progressing, silent], DEADLINES, NOW)[1]] == ["session/silent"]
