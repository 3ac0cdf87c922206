"""``projections.session_status``: the one derivation of a session's status, reason and detail, folded
over events as the ``sessionStatus`` subscription does, and agreeing with the ``sessions`` read model."""

from __future__ import annotations

from contracts import session as ss
from contracts.status import Reason, SessionStatus
from projections.session_status import SessionStatusView, evolve_status, status_change
from tests.support.projections import Builder, Feeder, build, feed, read_models, slots  # noqa: F401

PULLING = "pulling x: 1/3 layers, 1.0 MB of 9.0 MB"
CAUSE = "image 'x' not found and could not be pulled: no such host"
NO_AGENT = "no agent in resource group 'default' has 1 cpu, 1 GiB mem free"


def lifecycle(build: Builder) -> list:
    return [
        build.requested("s1", ("k1", slots("1", "1024"))),
        build(ss.SessionPendingReasonChanged, "s1", code="no-agent", message=NO_AGENT),
        build.scheduled("s1", k1="a1"),
        build(ss.KernelPreparing, "s1", kernel_id="k1"),
        build.status("s1", SessionStatus.PREPARING, Reason.KERNEL_PREPARING),
        build(ss.KernelProgressed, "s1", kernel_id="k1", detail=PULLING),
        build(ss.KernelTerminated, "s1", kernel_id="k1", reason=Reason.FAILED_TO_START, detail=CAUSE),
        build(ss.SessionStatusChanged, "s1", status=SessionStatus.ERROR, reason=Reason.FAILED_TO_START, detail=CAUSE),
    ]


def fold(events: list) -> list[SessionStatusView]:
    views, view = [], None
    for event in events:
        new = evolve_status(view, event)
        if new is not None and new != view:
            views.append(new)
        view = new
    return views


def test_the_status_follows_the_events_with_why_it_waits_progress_and_the_cause_of_a_failed_start(build: Builder) -> None:
    assert fold(lifecycle(build)) == [
        SessionStatusView(status=SessionStatus.PENDING),
        SessionStatusView(status=SessionStatus.PENDING, pending_code="no-agent", pending_reason=NO_AGENT),
        SessionStatusView(status=SessionStatus.SCHEDULED, reason=Reason.SCHEDULED),
        SessionStatusView(status=SessionStatus.PREPARING, reason=Reason.KERNEL_PREPARING),
        SessionStatusView(status=SessionStatus.PREPARING, reason=Reason.KERNEL_PREPARING, detail=PULLING),
        SessionStatusView(status=SessionStatus.ERROR, reason=Reason.FAILED_TO_START, detail=CAUSE),
    ]


def test_events_that_change_no_status_change_nothing(build: Builder) -> None:
    view = SessionStatusView(status=SessionStatus.PREPARING)
    event = build(ss.KernelPreparing, "s1", kernel_id="k1")
    assert status_change(event) is None
    assert evolve_status(view, event) is view
    assert evolve_status(None, build(ss.KernelProgressed, "s1", kernel_id="k1", detail=PULLING)) is None
    assert evolve_status(None, build(ss.SessionPendingReasonChanged, "s1", code="no-agent", message=NO_AGENT)) is None


def test_the_read_model_says_what_the_fold_says(feed: Feeder, build: Builder) -> None:
    events = lifecycle(build)
    for upto in range(1, len(events) + 1):
        feed.apply(events[upto - 1])
        view = fold(events[:upto])[-1]
        row = feed.row("SELECT status, status_reason, status_detail, pending_code, pending_reason FROM sessions"
                       " WHERE session_id = 's1'")
        assert row == (view.status.value, view.reason.value if view.reason else None, view.detail,
                       view.pending_code, view.pending_reason)
