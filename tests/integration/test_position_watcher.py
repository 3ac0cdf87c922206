"""The read-your-writes wait (``projections.position.PositionWatcher``) on a real PostgreSQL: woken by
the projector's notification, bounded by its deadline, and never wedged by a lost LISTEN connection."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from projections.position import (
    POSITION_CHANNEL, PROJECTION, PositionTimeoutError, PositionWatcher, read_position_async, wait_for_position,
)
from projections.rebuild import reset_read_models
from projections.schema import create_schema


@pytest.fixture
def dsn(pg_dsn: str) -> str:
    """Returns ``pg_dsn`` after creating the read models (position zero)."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        create_schema(conn)
        conn.execute("INSERT INTO projection_position (projection, position, stream_seq) VALUES (%s, 0, 0)"
                     " ON CONFLICT DO NOTHING", (PROJECTION,))
    return pg_dsn


def commit_position(dsn: str, position: int, *, notify: bool = True) -> None:
    """Moves the position as the projector does: the row and (unless told not to) the NOTIFY in one transaction."""
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE projection_position SET position = %s, stream_seq = %s WHERE projection = %s",
                     (position, position, PROJECTION))
        if notify:
            conn.execute("SELECT pg_notify(%s, %s)", (POSITION_CHANNEL, str(position)))


@pytest.fixture
async def watcher(dsn: str):
    """Yields a watcher that re-reads the stored position only after a minute (so notifications do the waking)."""
    positions = PositionWatcher(dsn, recheck=60.0, retry=0.2)
    try:
        yield positions
    finally:
        await positions.close()


async def started(positions: PositionWatcher, target: int) -> asyncio.Task[int]:
    """Returns a waiting task once the watcher listens (its first stored read done)."""
    task = asyncio.create_task(positions.wait(target, 10))
    for _ in range(500):
        if positions.position is not None:
            return task
        await asyncio.sleep(0.01)
    raise AssertionError("the watcher never listened")


async def test_a_waiter_is_woken_by_the_notification(dsn: str, watcher: PositionWatcher) -> None:
    first, second = await started(watcher, 5), asyncio.create_task(watcher.wait(9, 10))
    await asyncio.sleep(0.05)
    assert not first.done() and not second.done()
    began = time.monotonic()
    await asyncio.to_thread(commit_position, dsn, 5)
    assert await asyncio.wait_for(first, 5) == 5
    assert time.monotonic() - began < 2  # the notification, not the minute-long re-check
    assert not second.done()
    await asyncio.to_thread(commit_position, dsn, 12)
    assert await asyncio.wait_for(second, 5) == 12
    assert await watcher.wait(3, 0) == 12  # reached already: answered without waiting
    assert watcher.connects == 1


async def test_a_waiter_past_its_deadline_is_told_where_the_read_models_are(dsn: str, watcher: PositionWatcher) -> None:
    await asyncio.to_thread(commit_position, dsn, 4)
    began = time.monotonic()
    with pytest.raises(PositionTimeoutError) as behind:
        await watcher.wait(42, 0.3)
    assert 0.3 <= time.monotonic() - began < 2
    assert (behind.value.position, behind.value.current) == (42, 4)
    assert isinstance(behind.value, TimeoutError)


async def test_a_waiter_finishes_after_the_listen_connection_is_lost(dsn: str, watcher: PositionWatcher) -> None:
    waiting = await started(watcher, 7)
    pid = watcher.backend_pid
    assert pid is not None
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        # moved while nobody listens: the notification is lost, the re-read on reconnect finds it
        admin.execute("UPDATE projection_position SET position = 7, stream_seq = 7 WHERE projection = %s", (PROJECTION,))
    assert await asyncio.wait_for(waiting, 5) == 7
    assert watcher.connects == 2 and watcher.backend_pid not in (None, pid)


async def test_a_position_written_without_notification_is_found_by_the_recheck(dsn: str) -> None:
    positions = PositionWatcher(dsn, recheck=0.2)
    try:
        waiting = await started(positions, 3)
        await asyncio.to_thread(commit_position, dsn, 3, notify=False)
        assert await asyncio.wait_for(waiting, 5) == 3
    finally:
        await positions.close()


async def test_a_rebuild_resets_what_the_watcher_knows(dsn: str, watcher: PositionWatcher) -> None:
    await asyncio.to_thread(commit_position, dsn, 8)
    assert await watcher.wait(8, 5) == 8

    def reset() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            reset_read_models(conn)

    await asyncio.to_thread(reset)
    for _ in range(200):
        if watcher.position == 0:
            break
        await asyncio.sleep(0.01)
    assert watcher.position == 0
    with pytest.raises(PositionTimeoutError):
        await watcher.wait(8, 0.2)


async def test_a_closed_watcher_fails_its_waiters(dsn: str) -> None:
    positions = PositionWatcher(dsn)
    waiting = await started(positions, 99)
    await positions.close()
    with pytest.raises(RuntimeError, match="closed"):
        await waiting


async def test_a_one_off_wait_listens_on_the_callers_connection(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        waiting = asyncio.create_task(wait_for_position(conn, 6, timeout=10))
        await asyncio.sleep(0.1)
        await asyncio.to_thread(commit_position, dsn, 6)
        assert await asyncio.wait_for(waiting, 5) == 6
        with pytest.raises(PositionTimeoutError):
            await wait_for_position(conn, 60, timeout=0.2)
        assert (await (await conn.execute("SELECT 1")).fetchone()) == (1,)  # still usable afterwards


async def test_a_watcher_that_cannot_listen_warns_once_per_twenty_tries_not_at_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before, every failed try was a warning: two lines a second for as long as PostgreSQL was away or full."""
    refused = "postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2"  # nothing listens on port 1
    positions = PositionWatcher(refused, retry=0.01)
    caplog.set_level("WARNING", logger="projections.position")
    try:
        waiting = asyncio.create_task(positions.wait(1, timeout=60))
        async with asyncio.timeout(60):
            while positions.failures < 45:
                await asyncio.sleep(0.01)
        waiting.cancel()
    finally:
        await positions.close()
    warnings = [r for r in caplog.records if r.name == "projections.position" and r.levelname == "WARNING"]
    assert 1 <= len(warnings) <= 3 and "failed 1 in a row" in warnings[0].getMessage()


async def test_while_it_cannot_listen_its_waiters_are_served_by_its_fallback(dsn: str) -> None:
    """PostgreSQL refusing new connections ("too many clients") while the gateway's pool still holds its own: before,
    every read-your-writes wait timed out (READ_MODEL_BEHIND, "at 0") although the read models moved on."""
    refused = "postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2"

    async def stored() -> int:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            return (await read_position_async(conn)).position

    positions = PositionWatcher(refused, retry=0.05, fallback=stored)
    try:
        commit_position(dsn, 7, notify=False)
        assert await positions.wait(7, timeout=30) == 7
        assert positions.connects == 0 and positions.fallback_reads >= 1
    finally:
        await positions.close()
