"""``status_detail`` of the ``sessions`` and ``kernels`` read models: a preparation's progress while
it lasts, the cause of a failed start afterwards (hand-built events on a real PostgreSQL)."""

from __future__ import annotations

from contracts import session as ss
from contracts.status import Reason, SessionStatus
from projections.rebuild import dump_read_models, reset_read_models
from projections.schema import create_schema
from tests.support.projections import Builder, Feeder, build, feed, read_models, slots  # noqa: F401

CAUSE = "image 'nope:1' not found and could not be pulled: no such host"


def details(feed: Feeder) -> tuple[object, ...]:
    session = feed.row("SELECT status, status_reason, status_detail FROM sessions WHERE session_id = 's1'")
    kernel = feed.row("SELECT status, status_reason, status_detail FROM kernels WHERE kernel_id = 'k1'")
    assert session is not None and kernel is not None
    return session + kernel


def test_progress_shows_while_preparing_and_clears_on_the_next_status(feed: Feeder, build: Builder) -> None:
    feed.apply(
        build.requested("s1", ("k1", slots("1", "1024"))),
        build.scheduled("s1", k1="a1"),
        build(ss.KernelPreparing, "s1", kernel_id="k1"),
        build.status("s1", SessionStatus.PREPARING, Reason.KERNEL_PREPARING),
        build(ss.KernelProgressed, "s1", kernel_id="k1", detail="pulling x: 1/3 layers, 1.0 MB of 9.0 MB"),
        build(ss.KernelProgressed, "s1", kernel_id="k1", detail="pulling x: 3/3 layers, 9.0 MB of 9.0 MB"),
    )
    pulled = "pulling x: 3/3 layers, 9.0 MB of 9.0 MB"
    assert details(feed) == ("PREPARING", "kernel-preparing", pulled, "PREPARING", None, pulled)
    assert feed.row("SELECT version, last_position FROM sessions") == (6, 6)

    feed.apply(
        build(ss.KernelCreating, "s1", kernel_id="k1"),
        build.status("s1", SessionStatus.CREATING, Reason.KERNEL_CREATING),
    )
    assert details(feed) == ("CREATING", "kernel-creating", None, "CREATING", None, None)


def test_a_failed_start_shows_its_cause_on_the_session_and_the_kernel(feed: Feeder, build: Builder) -> None:
    feed.apply(
        build.requested("s1", ("k1", slots("1", "1024"))),
        build.scheduled("s1", k1="a1"),
        build(ss.KernelPreparing, "s1", kernel_id="k1"),
        build(ss.KernelTerminated, "s1", kernel_id="k1", reason=Reason.FAILED_TO_START, detail=CAUSE),
        build(ss.SessionStatusChanged, "s1", status=SessionStatus.ERROR, reason=Reason.FAILED_TO_START, detail=CAUSE),
    )
    assert details(feed) == ("ERROR", "failed-to-start", CAUSE, "ERROR", "failed-to-start", CAUSE)


def test_history_without_details_reads_as_none_and_rebuilds_identically(feed: Feeder, build: Builder) -> None:
    events = [
        build.requested("s1", ("k1", slots("1", "1024"))),
        build.scheduled("s1", k1="a1"),
        build(ss.KernelTerminated, "s1", kernel_id="k1", exit_code=0, reason=Reason.USER_REQUESTED),
        build.status("s1", SessionStatus.TERMINATED, Reason.USER_REQUESTED),
    ]
    feed.apply(*events)
    assert details(feed) == ("TERMINATED", "user-requested", None, "TERMINATED", "user-requested", None)
    before = dump_read_models(feed.conn)
    reset_read_models(feed.conn)
    feed.position = feed.stream_seq = 0
    feed.apply(*events)
    assert dump_read_models(feed.conn) == before


def test_tables_from_before_the_details_get_their_columns(feed: Feeder) -> None:
    feed.conn.execute("ALTER TABLE sessions DROP COLUMN status_detail")
    feed.conn.execute("ALTER TABLE kernels DROP COLUMN status_reason, DROP COLUMN status_detail")
    create_schema(feed.conn)
    columns = feed.rows("SELECT table_name, column_name FROM information_schema.columns"
                        " WHERE column_name IN ('status_reason', 'status_detail') AND table_schema = current_schema()"
                            " AND table_name IN ('sessions', 'kernels')"
                        " ORDER BY 1, 2")
    assert columns == [("kernels", "status_detail"), ("kernels", "status_reason"),
                       ("sessions", "status_detail"), ("sessions", "status_reason")]
