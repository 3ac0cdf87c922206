"""The cause of a failed start and the progress of a preparation, from report to event (no I/O):
the controller's mapping, the Session aggregate's decisions, the detail's clipping."""

from __future__ import annotations

import datetime as dt

import pytest

from contracts import commands as c
from contracts import session as ev
from contracts.reports import (
    MAX_DETAIL_CHARS,
    KernelExitedReport,
    KernelProgressReport,
    clip_detail,
    decode_report,
    encode_report,
)
from contracts.status import KernelStatus, Reason, SessionStatus
from services.controller.reports import command_for
from tests.unit.test_domain_session import at, kernel, request, run, schedule_cmd, types

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CAUSE = "image 'does-not-exist/image:1' not found and could not be pulled: no such host"


def test_an_exit_report_carries_its_cause_into_the_command() -> None:
    report = KernelExitedReport(agent_id="a1", observed_at=NOW, kernel_id="k1", session_id="s1",
                                reason="failed-to-start", detail=CAUSE)
    assert decode_report(encode_report(report)) == report
    assert command_for(report) == c.MarkKernelExited(kernel_id="k1", reason=Reason.FAILED_TO_START, detail=CAUSE)


def test_an_exit_report_of_an_older_agent_has_no_cause() -> None:
    old = b'{"type":"kernel_exited","agent_id":"a1","observed_at":"2026-01-01T00:00:00Z","kernel_id":"k1","session_id":"s1"}'
    report = decode_report(old)
    assert isinstance(report, KernelExitedReport) and report.detail is None
    assert command_for(report).detail is None  # type: ignore[attr-defined]


def test_a_huge_cause_is_clipped_keeping_both_ends() -> None:
    log = "start of the log " + "x" * 100_000 + " the runner's last words"
    report = KernelExitedReport(agent_id="a1", observed_at=NOW, kernel_id="k1", session_id="s1",
                                reason="failed-to-start", detail=log)
    detail = command_for(report).detail  # type: ignore[attr-defined]
    assert len(detail) == MAX_DETAIL_CHARS
    assert detail.startswith("start of the log") and detail.endswith("the runner's last words") and " ... " in detail


@pytest.mark.parametrize(("text", "expected"), [(None, None), ("  short\n", "short"), ("", "")])
def test_clip_detail_keeps_short_texts(text: str | None, expected: str | None) -> None:
    assert clip_detail(text) == expected


def test_a_progress_report_becomes_a_progress_command() -> None:
    report = KernelProgressReport(agent_id="a1", observed_at=NOW, kernel_id="k1", session_id="s1",
                                  detail="pulling x: 1/3 layers, 1.0 MB of 9.0 MB")
    assert command_for(report) == c.RecordKernelProgress(kernel_id="k1", detail=report.detail)


def test_a_failed_start_is_the_cause_of_the_kernel_and_of_the_session() -> None:
    state, events = run(at(SessionStatus.PREPARING),
                        c.MarkKernelExited(kernel_id="k1", reason=Reason.FAILED_TO_START, detail=CAUSE))
    terminated, changed = events
    assert isinstance(terminated, ev.KernelTerminated) and terminated.detail == CAUSE
    assert isinstance(changed, ev.SessionStatusChanged)
    assert (changed.status, changed.reason, changed.detail) == (SessionStatus.ERROR, Reason.FAILED_TO_START, CAUSE)
    assert state is not None and state.kernel("k1").detail == CAUSE


def test_the_cause_stays_the_session_detail_while_its_other_kernels_stop() -> None:
    state, _ = run(None, request(kernel("k1"), kernel("k2")))
    state, _ = run(state, schedule_cmd("k1", "k2"))
    state, _ = run(state, c.MarkKernelStarted(kernel_id="k2", container_id="c2"))
    state, events = run(state, c.MarkKernelExited(kernel_id="k1", reason=Reason.FAILED_TO_START, detail=CAUSE))
    assert [(e.status, e.detail) for e in events if isinstance(e, ev.SessionStatusChanged)] == [
        (SessionStatus.TERMINATING, CAUSE)]
    state, events = run(state, c.MarkKernelExited(kernel_id="k2", exit_code=0, reason=Reason.FAILED_TO_START))
    assert [(e.status, e.detail) for e in events if isinstance(e, ev.SessionStatusChanged)] == [
        (SessionStatus.TERMINATED, CAUSE)]


def test_an_ordinary_end_has_no_detail() -> None:
    _, events = run(at(SessionStatus.TERMINATING), c.MarkKernelExited(kernel_id="k1", exit_code=0,
                                                                       reason=Reason.USER_REQUESTED))
    assert all(getattr(e, "detail", None) is None for e in events)


def test_progress_is_recorded_while_the_kernel_prepares() -> None:
    state, events = run(at(SessionStatus.PREPARING), c.RecordKernelProgress(kernel_id="k1", detail="pulling: 1/2 layers"))
    assert types(events) == ["session.kernel_progressed"]
    assert state is not None and state.status is SessionStatus.PREPARING
    assert state.kernel("k1").status is KernelStatus.PREPARING and state.version == events[0].originator_version


@pytest.mark.parametrize("status", [SessionStatus.SCHEDULED, SessionStatus.CREATING, SessionStatus.RUNNING,
                                    SessionStatus.TERMINATING, SessionStatus.TERMINATED])
def test_progress_outside_the_preparation_is_a_no_op(status: SessionStatus) -> None:
    assert run(at(status), c.RecordKernelProgress(kernel_id="k1", detail="late"))[1] == []


def test_empty_progress_is_a_no_op() -> None:
    assert run(at(SessionStatus.PREPARING), c.RecordKernelProgress(kernel_id="k1", detail=""))[1] == []


def test_a_detail_holds_no_control_character_but_tab_and_newline_nor_a_lone_surrogate() -> None:
    """A kernel's last words reach events through the detail: a NUL there was refused by PostgreSQL's text, and the
    projector dead-lettered the kernel's end (the session stayed live in the read models)."""
    shown = clip_detail("out\x00of\x1b[31mmemory\tnow\nbye\x7f\ud800")
    assert shown == "out\ufffdof\ufffd[31mmemory\tnow\nbye\ufffd\ufffd"
