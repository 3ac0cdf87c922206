"""A bulk batch copies the event log beside its projecting (``Writer.copying_beside``): the server stores
the log's rows while Python projects the batch's events into the other read models; the statements asked
for meanwhile are sent after the copy, in order, and a read waits for it."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from contracts.status import Reason, SessionStatus
from projections import event_log, runner
from projections.delivery import Entry, check
from projections.writer import Writer
from tests.support.projections import Builder, Feeder, build, feed, read_models, slots  # noqa: F401
from tests.support.waiting import wait_for


def _last_query(pg_dsn: str, pid: int) -> str:
    with psycopg.connect(pg_dsn, autocommit=True) as watcher:
        row = watcher.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row[0] if row else ""


def test_a_bulk_batch_copies_the_event_log_while_its_events_are_projected(
    feed: Feeder, build: Builder, pg_dsn: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the first event is projected, the batch's connection is copying (or has copied) the event log;
    the batch then holds every row, as the incremental path writes them."""
    pid = feed.conn.info.backend_pid
    seen: list[str] = []
    real_handlers = runner.handlers

    def watched(event_type: type) -> tuple[Any, ...]:
        if not seen:  # the first event: the log's COPY must be under way or done by now, not after the batch
            seen.append(wait_for(lambda: (q := _last_query(pg_dsn, pid)).startswith("COPY event_log") and q,
                                 timeout=5, message="the event log is not copied while the batch is projected"))
        return real_handlers(event_type)

    monkeypatch.setattr(runner, "handlers", watched)
    events = [build.requested(f"s{i}", (f"k{i}", slots("1", "1"))) for i in range(3)]
    events.append(build.status("s0", SessionStatus.RUNNING, Reason.ALL_KERNELS_RUNNING))
    result = runner.apply_batch(feed.conn, [feed.delivery(e) for e in events], on_reject=feed.rejected.append,
                                bulk=True)
    assert (result.applied, result.rejected) == (4, 0)
    assert seen
    assert feed.rows("SELECT position FROM event_log ORDER BY 1") == [(1,), (2,), (3,), (4,)]
    assert feed.rows("SELECT session_id, status FROM sessions ORDER BY 1") == [
        ("s0", "RUNNING"), ("s1", "PENDING"), ("s2", "PENDING")]


def _log_rows(feed: Feeder, build: Builder, count: int) -> list[tuple[Any, ...]]:
    entries = [check(feed.delivery(build.requested(f"s{i}", (f"k{i}", slots("1", "1"))))) for i in range(count)]
    assert all(isinstance(entry, Entry) for entry in entries)
    return [event_log.row(entry) for entry in entries]  # type: ignore[arg-type]


def test_statements_asked_for_beside_a_copy_are_sent_after_it_in_order_and_a_read_waits_for_it(
    feed: Feeder, build: Builder,
) -> None:
    rows = _log_rows(feed, build, 3)
    scope = "project:ml"
    with feed.conn.transaction():
        w = Writer(feed.conn, pipelined=False)
        with w.copying_beside(event_log.INSERT, rows):
            w.execute("INSERT INTO vfolder_scope_limits (quota_scope, limit_bytes) VALUES (%s, 1)", (scope,))
            w.execute_one("UPDATE vfolder_scope_limits SET limit_bytes = 2 WHERE quota_scope = %s", (scope,), "none")
            assert w.fetchone("SELECT count(*) FROM event_log", ()) == (3,)  # the copy is done, the two sent
            w.execute_one("UPDATE vfolder_scope_limits SET limit_bytes = 3 WHERE quota_scope = %s", (scope,), "none")
        w.settle()
    assert feed.rows("SELECT limit_bytes FROM vfolder_scope_limits") == [(3,)]
    assert feed.rows("SELECT count(*) FROM event_log") == [(3,)]


def test_a_copy_beside_that_fails_raises_when_the_block_ends(feed: Feeder, build: Builder) -> None:
    rows = _log_rows(feed, build, 2)
    with pytest.raises(psycopg.errors.UniqueViolation):
        with feed.conn.transaction():
            w = Writer(feed.conn, pipelined=False)
            with w.copying_beside(event_log.INSERT, rows + rows[:1]):
                w.execute("INSERT INTO vfolder_scope_limits (quota_scope, limit_bytes) VALUES ('project:ml', 1)")
    assert feed.rows("SELECT count(*) FROM event_log") == [(0,)]
    assert feed.rows("SELECT count(*) FROM vfolder_scope_limits") == [(0,)]
