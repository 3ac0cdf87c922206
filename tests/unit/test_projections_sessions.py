"""The ``sessions`` read model, fed hand-built events through the runner on a real PostgreSQL."""

from __future__ import annotations

import json

from contracts import session as ss
from contracts.status import Reason, SessionStatus
from tests.support.projections import Builder, Feeder, at, build, feed, read_models, slots  # noqa: F401

GIB = str(1024**3)


def session_row(feed: Feeder, session_id: str) -> dict:
    cur = feed.conn.execute("SELECT * FROM sessions WHERE session_id = %s", (session_id,))
    names = [c.name for c in cur.description]
    row = cur.fetchone()
    assert row is not None, f"no session {session_id}"
    return dict(zip(names, row))


def test_requested_session_is_pending_with_summed_slots(feed: Feeder, build: Builder) -> None:
    feed.apply(build.requested("s1", ("k1", slots("1", GIB)), ("k2", slots("2.5", GIB, cuda_device="1")), name="train"))
    row = session_row(feed, "s1")
    assert row["status"] == "PENDING"
    assert row["status_reason"] is None
    assert row["name"] == "train" and row["owner"] == "ak-owner" and row["image"] == "python:3.11"
    assert row["session_type"] == "interactive"
    assert row["requested_slots"] == {"cpu": "3.5", "mem": str(2 * 1024**3), "cuda.device": "1"}
    assert row["cluster_size"] == 2
    assert row["agent_ids"] == []
    assert row["status_history"] == {"PENDING": "2026-01-01T12:00:01Z"}
    assert row["created_at"] == row["updated_at"] == at(1)
    assert row["terminated_at"] is None
    assert (row["version"], row["last_position"]) == (1, 1)


def test_scheduled_session_records_agents_and_history(feed: Feeder, build: Builder) -> None:
    feed.apply(
        build.requested("s1", ("k1", slots("1", GIB)), ("k2", slots("1", GIB))),
        build.scheduled("s1", k1="agent-b", k2="agent-a"),
    )
    row = session_row(feed, "s1")
    assert row["status"] == "SCHEDULED"
    assert row["status_reason"] == "scheduled"
    assert row["agent_ids"] == ["agent-a", "agent-b"]
    assert row["status_history"] == {"PENDING": "2026-01-01T12:00:01Z", "SCHEDULED": "2026-01-01T12:00:02Z"}
    assert (row["version"], row["last_position"], row["updated_at"]) == (2, 2, at(2))


def test_full_lifecycle_sets_terminated_at_and_keeps_every_status(feed: Feeder, build: Builder) -> None:
    feed.apply(build.requested("s1", ("k1", slots("1", GIB))), build.scheduled("s1", k1="a1"))
    feed.apply(
        build(ss.KernelPreparing, "s1", kernel_id="k1"),
        build.status("s1", SessionStatus.PREPARING, Reason.KERNEL_PREPARING),
        build(ss.KernelStarted, "s1", kernel_id="k1", container_id="c-1"),
        build.status("s1", SessionStatus.RUNNING, Reason.ALL_KERNELS_RUNNING),
    )
    assert session_row(feed, "s1")["terminated_at"] is None
    feed.apply(
        build.status("s1", SessionStatus.TERMINATING, Reason.USER_REQUESTED),
        build(ss.KernelTerminated, "s1", kernel_id="k1", exit_code=0, reason=Reason.USER_REQUESTED),
        build.status("s1", SessionStatus.TERMINATED, Reason.USER_REQUESTED),
    )
    row = session_row(feed, "s1")
    assert row["status"] == "TERMINATED"
    assert row["status_reason"] == "user-requested"
    assert row["status_history"]["TERMINATED"] == "2026-01-01T12:00:09Z"
    assert set(row["status_history"]) == {"PENDING", "SCHEDULED", "PREPARING", "RUNNING", "TERMINATING", "TERMINATED"}
    assert row["terminated_at"] == at(9)
    assert (row["version"], row["last_position"]) == (9, 9)


def test_kernel_events_move_the_session_version(feed: Feeder, build: Builder) -> None:
    feed.apply(build.requested("s1", ("k1", slots("1", GIB))), build.scheduled("s1", k1="a1"))
    feed.apply(build(ss.KernelCreating, "s1", kernel_id="k1"))
    row = session_row(feed, "s1")
    assert (row["status"], row["version"], row["last_position"], row["updated_at"]) == ("SCHEDULED", 3, 3, at(3))


def test_cancelled_pending_session_is_terminated(feed: Feeder, build: Builder) -> None:
    feed.apply(build.requested("s1", ("k1", slots("1", GIB))))
    feed.apply(build.status("s1", SessionStatus.CANCELLED, Reason.USER_REQUESTED))
    row = session_row(feed, "s1")
    assert (row["status"], row["status_reason"], row["terminated_at"]) == ("CANCELLED", "user-requested", at(2))


def test_failed_session_is_error_with_terminated_at(feed: Feeder, build: Builder) -> None:
    feed.apply(build.requested("s1", ("k1", slots("1", GIB))), build.scheduled("s1", k1="a1"))
    feed.apply(
        build(ss.KernelTerminated, "s1", kernel_id="k1", exit_code=None, reason=Reason.FAILED_TO_START),
        build.status("s1", SessionStatus.ERROR, Reason.FAILED_TO_START),
    )
    row = session_row(feed, "s1")
    assert (row["status"], row["status_reason"], row["terminated_at"]) == ("ERROR", "failed-to-start", at(4))


def test_status_of_unknown_session_is_dead_lettered_and_changes_nothing(feed: Feeder, build: Builder) -> None:
    feed.apply(build.requested("s1", ("k1", slots("1", GIB))))
    result = feed.apply(build.status("ghost", SessionStatus.CANCELLED, Reason.USER_REQUESTED))
    assert (result.applied, result.rejected) == (0, 1)
    assert "no session ghost" in feed.rejected[0].error
    assert feed.rows("SELECT session_id, status FROM sessions") == [("s1", "PENDING")]
    assert feed.row("SELECT count(*) FROM event_log") == (1,)


def test_status_history_is_json_of_iso_timestamps(feed: Feeder, build: Builder) -> None:
    feed.apply(build.requested("s1", ("k1", slots("1", GIB))))
    (text,) = feed.row("SELECT status_history::text FROM sessions")  # type: ignore[misc]
    assert json.loads(text) == {"PENDING": "2026-01-01T12:00:01Z"}
