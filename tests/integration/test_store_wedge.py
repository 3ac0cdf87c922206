"""The event store never wedges: a large save completes, a stalled one is cut off and retried,
every session the store opens carries statement, lock and idle-in-transaction timeouts, and each read
is tried again on a fresh connection when PostgreSQL dropped the pooled ones.

Before ``services.common.pg_recorder``, a save of a few MB (one scheduling pass over a long queue)
hung forever in psycopg's pipeline mode while holding the event table's lock."""

from __future__ import annotations

import threading
from decimal import Decimal

import psycopg
import pytest

from contracts import commands as c
from contracts.session import KernelSpec, SessionSpec
from domain import session as session_domain
from services.application.context import make_context
from services.common.pg_limits import SESSION_LIMITS, limited_dsn
from services.common.pg_recorder import StallWatch
from services.common.snapshots import Snapshot
from services.application.sessions import Sessions

SLOTS = {"cpu": Decimal(1), "mem": Decimal(1024**3)}
DEADLINE = 120.0
"""Far longer than the save takes on a busy machine (about 1 s); the old path never returned."""


def _requests(count: int, padding: int, prefix: str = "s") -> list:
    ctx = make_context("test")
    events = []
    for i in range(count):
        command = c.RequestSession(
            owner="AK", spec=SessionSpec(
                name=f"{prefix}{i}", image="py", startup_command="x" * padding,
                kernels=[KernelSpec(kernel_id=f"{prefix}{i}-k0", slots=SLOTS)],
            ),
        )
        events += session_domain.decide(None, command, ctx, f"{prefix}-{i}")
    return events


def _in_thread(work) -> list:  # type: ignore[no-untyped-def]
    """Runs ``work`` on a daemon thread; returns [result] or [] when it did not finish in time."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    thread.join(DEADLINE)
    return result


def test_a_save_of_several_megabytes_completes(pg_dsn: str) -> None:
    sessions = Sessions(pg_dsn)
    try:
        events = _requests(6000, 1000)  # about 8 MB in one transaction
        done = _in_thread(lambda: sessions.record(events))
        assert done, "the save did not return: the store wedged"
        assert done[0] == sessions.position()
        with psycopg.connect(pg_dsn) as conn:
            (count,) = conn.execute("SELECT count(*) FROM berth_events").fetchone()  # type: ignore[misc]
        assert count == 6000
    finally:
        sessions.close()


def test_concurrent_large_saves_get_notification_ids_in_commit_order(pg_dsn: str) -> None:
    """The table lock is kept: each save's ids are contiguous, never interleaved with another's."""
    sessions = Sessions(pg_dsn)
    try:
        batches = [_requests(800, 200, prefix=f"b{n}") for n in range(4)]
        threads = [threading.Thread(target=sessions.record, args=(batch,)) for batch in batches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE)
        with psycopg.connect(pg_dsn) as conn:
            rows = conn.execute("SELECT originator_id FROM berth_events ORDER BY notification_id").fetchall()
        owners = [row[0].split("-")[0] for row in rows]
        assert len(owners) == 3200
        runs = [owners[i] for i in range(len(owners)) if i == 0 or owners[i] != owners[i - 1]]
        assert sorted(runs) == ["b0", "b1", "b2", "b3"]
    finally:
        sessions.close()


def test_every_store_session_has_timeouts(pg_dsn: str) -> None:
    sessions = Sessions(pg_dsn)
    try:
        with sessions.recorder.datastore.get_connection() as conn:  # type: ignore[attr-defined]
            for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"):
                (value,) = conn.execute(f"SHOW {name}").fetchone().values()
                assert value not in ("0", "0ms"), name
    finally:
        sessions.close()


def test_a_limited_dsn_sets_the_timeouts_on_a_plain_connection(pg_dsn: str) -> None:
    with psycopg.connect(limited_dsn(pg_dsn)) as conn:
        for name, value in SESSION_LIMITS.items():
            assert conn.execute(f"SHOW {name}").fetchone()[0] == value  # type: ignore[index]


def test_a_stalled_call_is_cut_off_and_its_locks_released(pg_dsn: str) -> None:
    watch = StallWatch(deadline=1.0, interval=0.1)
    with psycopg.connect(pg_dsn, autocommit=True) as setup:
        setup.execute("CREATE TABLE held (x int)")
    conn = psycopg.connect(limited_dsn(pg_dsn))
    try:
        conn.execute("LOCK TABLE held IN EXCLUSIVE MODE")
        with pytest.raises(psycopg.OperationalError):
            with watch.watching(conn.pgconn.socket, "a test call"):
                conn.execute("SELECT pg_sleep(600)")
        assert watch.stalls == 1
    finally:
        conn.close()
    with psycopg.connect(pg_dsn) as other:  # the lock went with the connection
        other.execute("SET lock_timeout = '10s'")  # shorter than the statement timeout: the watch freed it
        other.execute("LOCK TABLE held IN EXCLUSIVE MODE")


def _drop_other_connections(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall()
    return len(rows)


def test_each_read_is_tried_again_on_a_fresh_connection_when_postgresql_dropped_the_pooled_ones(
        pg_dsn: str) -> None:
    """After an outage, the first use of each pooled connection fails: the read is tried again on
    the next connection instead of failing the request (a gateway answered UNAVAILABLE to one
    ``createSession`` retry after another until the client gave up)."""
    sessions = Sessions(pg_dsn)
    recorder = sessions.recorder
    snapshot = Snapshot(1, "State", "fingerprint", b"{}")
    reads = {
        "select_last": lambda: recorder.select_last(["s1"]),  # type: ignore[attr-defined]
        "select_newer": lambda: recorder.select_newer({"s1": 0}),  # type: ignore[attr-defined]
        "get_snapshot": lambda: recorder.get_snapshot("s1", "kind"),  # type: ignore[attr-defined]
        "put_snapshot": lambda: recorder.put_snapshot("s1", "kind", snapshot),  # type: ignore[attr-defined]
    }
    try:
        for read in reads.values():
            read()  # a connection of the store's pool is open
            assert _drop_other_connections(pg_dsn) > 0
            read()  # raised OperationalError on the dropped connection before
        assert recorder.get_snapshot("s1", "kind") == snapshot  # type: ignore[attr-defined]
    finally:
        sessions.close()
