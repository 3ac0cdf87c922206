"""The runner: one transaction per batch with the position, rejects to the dead letters,
poison events isolated, stale callers told that the position moved, and rebuilds."""

from __future__ import annotations

import psycopg
import pytest

from contracts import session as ss
from contracts.agent import AgentRegistered
from contracts.catalog import encode_event
from contracts.status import Reason, SessionStatus
from projections.delivery import check
from projections.errors import PositionMovedError
from projections.position import Position, read_position
from projections.rebuild import dump_read_models, reset_read_models
from projections.runner import DeadLetterError, apply_batch, handlers
from projections.schema import TABLES, create_schema, drop_schema
from tests.support.projections import Builder, Feeder, build, feed, read_models, slots  # noqa: F401


def test_batch_moves_the_position_with_the_rows(feed: Feeder, build: Builder) -> None:
    assert read_position(feed.conn) == Position(0, 0)
    result = feed.apply(build.requested("s1", ("k1", slots("1", "1"))), build.requested("s2", ("k2", slots("1", "1"))))
    assert (result.position, result.stream_seq, result.applied, result.rejected) == (2, 2, 2, 0)
    assert read_position(feed.conn) == Position(2, 2)


def test_malformed_messages_are_rejected_and_the_position_moves_past_them(feed: Feeder, build: Builder) -> None:
    good = feed.delivery(build.requested("s1", ("k1", slots("1", "1"))))
    garbage = feed.raw("ev.session.x.requested", b"{not json", "2")
    missing_header = feed.raw("ev.session.s9.requested", encode_event(build.requested("s9", ("k9", slots("1", "1")))), None)
    wrong_subject = feed.raw("ev.session.other.requested", encode_event(build.requested("s8", ("k8", slots("1", "1")))), "3")
    invalid = feed.raw("ev.session.s7.requested", b'{"type": "session.requested", "originator_id": "s7"}', "4")
    later = feed.delivery(build.requested("s2", ("k2", slots("1", "1"))))
    result = feed.apply(good, garbage, missing_header, wrong_subject, invalid, later)
    assert (result.applied, result.rejected, result.stream_seq, result.position) == (2, 4, 6, 2)
    errors = [r.error for r in feed.rejected]
    assert errors[0].startswith("DecodeError")
    assert "Berth-Position" in errors[1]
    assert "does not match the payload" in errors[2]
    assert errors[3].startswith("ValidationError")
    assert [r.delivery.stream_seq for r in feed.rejected] == [2, 3, 4, 5]
    assert feed.rows("SELECT session_id FROM sessions ORDER BY 1") == [("s1",), ("s2",)]


def test_position_that_does_not_move_forward_is_rejected(feed: Feeder, build: Builder) -> None:
    feed.apply(build.requested("s1", ("k1", slots("1", "1"))))
    replayed = feed.raw("ev.session.s2.requested", encode_event(build.requested("s2", ("k2", slots("1", "1")))), "1")
    result = feed.apply(replayed)
    assert result.rejected == 1 and "not after the applied position 1" in feed.rejected[0].error
    assert read_position(feed.conn) == Position(1, 2)


def test_a_poison_event_is_isolated_and_the_rest_of_the_batch_applies(feed: Feeder, build: Builder) -> None:
    result = feed.apply(
        build.requested("s1", ("k1", slots("1", "1"))),
        build.status("ghost", SessionStatus.CANCELLED, Reason.USER_REQUESTED),
        build.status("s1", SessionStatus.CANCELLED, Reason.USER_REQUESTED),
    )
    assert (result.applied, result.rejected, result.position) == (2, 1, 3)
    assert feed.rows("SELECT session_id, status FROM sessions") == [("s1", "CANCELLED")]
    assert feed.rows("SELECT position FROM event_log ORDER BY 1") == [(1,), (3,)]


def test_messages_already_applied_are_skipped(feed: Feeder, build: Builder) -> None:
    first = feed.delivery(build.requested("s1", ("k1", slots("1", "1"))))
    feed.apply(first)
    result = feed.apply(first)
    assert (result.applied, result.rejected, result.stream_seq) == (0, 0, 1)
    assert feed.row("SELECT count(*) FROM event_log") == (1,)


def test_stale_caller_is_told_that_the_position_moved(feed: Feeder, build: Builder) -> None:
    feed.apply(build.requested("s1", ("k1", slots("1", "1"))))
    next_one = feed.delivery(build.requested("s2", ("k2", slots("1", "1"))))
    with pytest.raises(PositionMovedError) as caught:
        apply_batch(feed.conn, [next_one], on_reject=feed.rejected.append, expected_stream_seq=0)
    assert (caught.value.expected, caught.value.found) == (0, 1)
    assert feed.row("SELECT count(*) FROM sessions") == (1,)


def test_failing_dead_letter_rolls_the_batch_back(feed: Feeder, build: Builder) -> None:
    good = feed.delivery(build.requested("s1", ("k1", slots("1", "1"))))
    bad = feed.raw("ev.session.x.requested", b"nope", "2")

    def refuse(_: object) -> None:
        raise ConnectionError("nats is down")

    with pytest.raises(DeadLetterError):
        apply_batch(feed.conn, [good, bad], on_reject=refuse)
    assert read_position(feed.conn) == Position(0, 0)
    assert feed.row("SELECT count(*) FROM sessions") == (0,)


def test_reset_then_replay_gives_identical_tables(feed: Feeder, build: Builder) -> None:
    events = [
        build.registered("a1", cpu="4", mem="4096"),
        build.requested("s1", ("k1", slots("1", "1024")), ("k2", slots("1", "1024"))),
        build.scheduled("s1", k1="a1", k2="a1"),
        build(ss.KernelStarted, "s1", kernel_id="k1", container_id="c1"),
        build.requested("s2", ("k3", slots("2", "2048"))),
        build.status("s2", SessionStatus.CANCELLED, Reason.USER_REQUESTED),
    ]
    deliveries = [feed.delivery(e) for e in events]
    feed.apply(*deliveries[:3])
    feed.apply(*deliveries[3:])
    before = dump_read_models(feed.conn)
    reset_read_models(feed.conn)
    assert read_position(feed.conn) == Position(0, 0)
    assert all(rows == [] for rows in dump_read_models(feed.conn).values())
    for delivery in deliveries:
        apply_batch(feed.conn, [delivery], on_reject=feed.rejected.append)
    assert dump_read_models(feed.conn) == before
    assert feed.rejected == []


def test_a_batch_checked_by_the_caller_is_applied_as_checked(feed: Feeder, build: Builder) -> None:
    """A rebuild checks the next batch while one is applied: the runner takes those results (and
    refuses results that are not one per delivery)."""
    good = feed.delivery(build.requested("s1", ("k1", slots("1", "1"))))
    garbage = feed.raw("ev.session.x.requested", b"{not json", "2")
    later = feed.delivery(build.requested("s2", ("k2", slots("1", "1"))))
    deliveries = [good, garbage, later]
    with pytest.raises(ValueError):
        apply_batch(feed.conn, deliveries, on_reject=feed.rejected.append, checked=[check(good)])
    assert read_position(feed.conn) == Position(0, 0)
    result = apply_batch(feed.conn, deliveries, on_reject=feed.rejected.append, checked=[check(d) for d in deliveries])
    assert (result.applied, result.rejected, result.position, result.stream_seq) == (2, 1, int(later.position), 3)
    assert [r.delivery for r in feed.rejected] == [garbage]
    assert feed.rows("SELECT session_id FROM sessions ORDER BY session_id") == [("s1",), ("s2",)]


def test_an_event_type_goes_to_the_read_models_it_changes_only_in_their_order() -> None:
    def models(event_type: type) -> list[str]:
        return [handler.__module__ for handler in handlers(event_type)]

    assert models(ss.SessionRequested) == ["projections.sessions", "projections.kernels"]
    assert models(AgentRegistered) == ["projections.agents"]
    assert models(ss.ExecutionFinished) == []  # the event log's only


def test_schema_can_be_created_twice_and_dropped(read_models: psycopg.Connection) -> None:
    create_schema(read_models)
    drop_schema(read_models)
    tables = read_models.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ANY(%s) AND table_schema = current_schema()",
        (list(TABLES),)
    ).fetchone()
    assert tables == (0,)


ADDED_COLUMNS = (
    ("sessions", ("user_name", "domain", "project", "resource_group", "priority", "pending_code", "pending_reason",
                  "status_detail", "mounts")),
    ("kernels", ("status_reason", "status_detail")),
    ("agents", ("allocations", "resource_group")),
    ("vfolders", ("uploaded_bytes",)),
)
"""The columns that ``schema.sql`` adds to tables created before them."""


def _columns(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    return conn.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = ANY(%s) ORDER BY 1, 2",
        ([table for table, _ in ADDED_COLUMNS],)).fetchall()


def test_tables_created_before_their_later_columns_get_every_one_of_them(read_models: psycopg.Connection) -> None:
    fresh = _columns(read_models)
    for table, columns in ADDED_COLUMNS:
        read_models.execute(f"ALTER TABLE {table} " + ", ".join(f"DROP COLUMN {name}" for name in columns))
    assert len(_columns(read_models)) == len(fresh) - sum(len(columns) for _, columns in ADDED_COLUMNS)
    create_schema(read_models)
    assert _columns(read_models) == fresh
    create_schema(read_models)  # and once there, they are left as they are
    assert _columns(read_models) == fresh


def test_the_schema_creates_exactly_the_tables_a_rebuild_drops(read_models: psycopg.Connection) -> None:
    """A table of ``schema.sql`` missing from ``TABLES`` would survive a rebuild with its old rows."""
    created = {name for (name,) in read_models.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()").fetchall()}
    assert created == set(TABLES)
