"""The position of the read models: the last event (notification id) and stream message applied,
and the one read-your-writes wait.

The projector updates the position in the same transaction as the rows and notifies
``POSITION_CHANNEL`` with the new position (``projections.runner``); a rebuild notifies
``RESET`` (``projections.rebuild``). A reader waits until its own write is visible with a
``PositionWatcher``: ONE ``LISTEN`` connection per process, shared by every waiter, that
wakes each waiter whose position the notifications reach. A notification is never the only
way to learn the position: on every (re)connect the watcher reads the stored position after
``LISTEN`` (so one sent while it was not listening is not lost), and while anyone waits it
reads it again every ``recheck`` seconds (a writer that does not notify, a dropped
connection not noticed yet); every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NamedTuple

import psycopg

__all__ = [
    "POSITION_CHANNEL",
    "PROJECTION",
    "Position",
    "PositionTimeoutError",
    "PositionWatcher",
    "RESET",
    "read_position",
    "read_position_async",
    "wait_for_position",
]

log = logging.getLogger(__name__)

PROJECTION = "read_models"
"""The name of the read models' row in ``projection_position``."""
POSITION_CHANNEL = "berth_projection_position"
"""The PostgreSQL channel notified with the new position (decimal text) after each applied batch."""
RESET = "0"
"""The payload notified when the read models were reset (the position is back to zero)."""
WARN_EVERY = 20
"""While the watcher cannot listen (PostgreSQL away, or full), it warns at the first failed try and at every 20th
(every 10 s at the default retry), not at each try (two lines a second)."""

_SELECT = "SELECT position, stream_seq FROM projection_position WHERE projection = %s"
_KEEPALIVE = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}


class Position(NamedTuple):
    """The last event store notification id and EVENTS stream sequence applied."""

    position: int
    stream_seq: int


class PositionTimeoutError(TimeoutError):
    """Raised when the read models did not reach ``position`` before the deadline; ``current``
    is the last position known."""

    def __init__(self, position: int, current: int, timeout: float) -> None:
        super().__init__(f"read models at position {current}, not {position}, after {timeout} s")
        self.position = position
        self.current = current


def read_position(conn: psycopg.Connection) -> Position:
    """Returns the applied position (zeros before the first batch)."""
    row = conn.execute(_SELECT, (PROJECTION,)).fetchone()
    return Position(*row) if row else Position(0, 0)


async def read_position_async(conn: psycopg.AsyncConnection) -> Position:
    """Returns the applied position (zeros before the first batch), on an async connection."""
    cur = await conn.execute(_SELECT, (PROJECTION,))
    row = await cur.fetchone()
    return Position(*row) if row else Position(0, 0)


class _Seen(NamedTuple):
    position: int
    stored: bool  # read from the table (authoritative), not notified


async def _follow(conn: psycopg.AsyncConnection, recheck: float, busy: Callable[[], bool]) -> AsyncIterator[_Seen]:
    """Yields the position on ``conn`` (autocommit): the stored one once ``LISTEN`` holds, each
    notified one, and the stored one again every ``recheck`` seconds while ``busy()``."""
    await conn.execute(f"LISTEN {POSITION_CHANNEL}")
    yield _Seen((await read_position_async(conn)).position, True)
    while True:
        async for note in conn.notifies(timeout=recheck):
            if note.payload.isdigit():
                yield _Seen(int(note.payload), False)
        if busy():
            yield _Seen((await read_position_async(conn)).position, True)


class PositionWatcher:
    """Waits for the read models to reach a position (``wait``), woken by the projector's
    notifications on one ``LISTEN`` connection that it opens on the first wait and keeps,
    reconnecting after ``retry`` seconds when it is lost."""

    def __init__(self, dsn: str, *, recheck: float = 1.0, retry: float = 0.5,
                 fallback: Callable[[], Awaitable[int]] | None = None) -> None:
        """Prepares the watcher on ``dsn``; nothing connects before the first ``wait``. ``fallback`` reads the stored
        position another way (a connection the caller holds already, from its pool): while the LISTEN connection
        cannot be opened (PostgreSQL refusing new connections: "too many clients"), the waiters are served by it,
        once per ``retry``, instead of timing out while the read models move on."""
        self._fallback = fallback
        self._dsn = dsn
        self._recheck = recheck
        self._retry = retry
        self._known: int | None = None
        self._waiters: dict[asyncio.Future[int], int] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.connects = 0
        """How many times the LISTEN connection was opened (for tests and logs)."""
        self.failures = 0
        """How many times opening or keeping it failed (for tests and logs)."""
        self.fallback_reads = 0
        """How many times ``fallback`` read the position meanwhile (for tests and logs)."""
        self.backend_pid: int | None = None
        """The server process of the LISTEN connection while it is open."""

    @property
    def position(self) -> int | None:
        """Returns the last position known, None before the first read."""
        return self._known

    @property
    def waiting(self) -> int:
        """Returns how many waits are in progress (for tests and logs)."""
        return len(self._waiters)

    async def wait(self, position: int, timeout: float) -> int:
        """Returns the position once the read models reached ``position`` (at once when already
        known); raises ``PositionTimeoutError`` when ``timeout`` seconds pass first."""
        if self._closed:
            raise RuntimeError("the position watcher is closed")
        if self._known is not None and self._known >= position:
            return self._known
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen(), name="berth-position-watcher")
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters[waiter] = position
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        except TimeoutError:
            raise PositionTimeoutError(position, self._known or 0, timeout) from None
        finally:
            self._waiters.pop(waiter, None)

    async def close(self) -> None:
        """Stops listening; waiters still waiting fail."""
        self._closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(RuntimeError("the position watcher is closed"))
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _seen(self, seen: _Seen) -> None:
        if seen.stored or (seen.position == 0 and self._known is not None):
            self._known = seen.position  # stored: the truth; a notified 0: the read models were reset
        else:
            self._known = max(self._known or 0, seen.position)  # a notification may trail a read
        for waiter, target in self._waiters.items():
            if target <= self._known and not waiter.done():
                waiter.set_result(self._known)

    async def _listen(self) -> None:
        failed = 0  # tries in a row that failed: the first, and every WARN_EVERY-th, is logged
        while not self._closed:
            try:
                async with await psycopg.AsyncConnection.connect(self._dsn, autocommit=True, **_KEEPALIVE) as conn:
                    self.connects += 1
                    self.backend_pid = conn.info.backend_pid
                    if failed:
                        log.info("position watcher: listening again after %d failed tries", failed)
                        failed = 0
                    async for seen in _follow(conn, self._recheck, lambda: bool(self._waiters)):
                        self._seen(seen)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a lost or refused connection: waiters keep their deadlines
                failed += 1
                self.failures += 1
                if failed % WARN_EVERY == 1:
                    log.warning("position watcher: %s: %s; trying again every %.1f s (failed %d in a row)",
                                type(exc).__name__, exc, self._retry, failed)
            finally:
                self.backend_pid = None
            await self._read_meanwhile()
            await asyncio.sleep(self._retry)

    async def _read_meanwhile(self) -> None:
        """Reads the stored position with ``fallback`` for the waiters while the watcher cannot listen."""
        if self._fallback is None or not self._waiters or self._closed:
            return
        try:
            position = await self._fallback()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - that way is closed too: the next try may open either
            log.debug("position watcher: its fallback read failed: %s", exc)
            return
        self.fallback_reads += 1
        self._seen(_Seen(position, True))


async def wait_for_position(conn: psycopg.AsyncConnection, position: int, timeout: float) -> int:
    """Returns the applied position once it reaches ``position``, listening on the caller's
    connection (autocommit; ``UNLISTEN`` after) as a ``PositionWatcher`` does; raises
    ``PositionTimeoutError`` when ``timeout`` seconds pass first. For one-off waits (tests,
    tools); a process that waits often shares one ``PositionWatcher``."""
    current = 0

    async def reach() -> int:
        nonlocal current
        async for seen in _follow(conn, 1.0, lambda: True):
            current = seen.position if seen.stored else max(current, seen.position)
            if current >= position:
                return current
        raise AssertionError("unreachable")

    try:
        async with asyncio.timeout(timeout):
            return await reach()
    except TimeoutError:
        raise PositionTimeoutError(position, current, timeout) from None
    finally:
        if not conn.closed:
            await conn.execute(f"UNLISTEN {POSITION_CHANNEL}")
