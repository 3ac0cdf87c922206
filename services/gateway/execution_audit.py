"""The audit record of each run (``session.execution_finished``), written after its ``done`` went out.

The record is an event-store write (the session loaded, one event appended): on the critical
path it delayed every ``done`` by a transaction. ``ExecutionAudit`` takes the record at once and
writes it on its own task, in order; a transient store outage (connection refused or dropped) is
waited out with backoff, never turned into a lost record; a record the store refuses for good
(the session is gone) is logged. ``close`` drains what is queued (up to ``DRAIN_TIMEOUT``) before
the gateway stops, and names any run it could not record. The queue is bounded (``MAX_QUEUED``):
when it is full, ``submit`` waits, so a store that cannot keep up slows the runs down instead of
growing the gateway's memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError

from contracts.commands import RecordExecution
from domain.emitting import Context
from services.common.transient import OUTAGES, unavailable_dependency

__all__ = ["DRAIN_TIMEOUT", "ExecutionAudit", "MAX_QUEUED", "RETRY_DELAYS"]

log = logging.getLogger(__name__)

MAX_QUEUED = 10_000
DRAIN_TIMEOUT = 10.0
RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
"""Waits between attempts while the store is unreachable (the last one repeats)."""
_TRANSIENT = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError, ConnectionError)

Recorder = Callable[[str, RecordExecution, Context, int | None], Awaitable[object]]
"""``record(session_id, command, ctx, seen_version)``: idempotent given ``seen_version`` (the
session's version before the run; ``Sessions.record_execution``), so a retry after a save whose
outcome was not known records the run once."""
Item = tuple[str, RecordExecution, Context, int | None]
OUTAGE = "gateway-execution-audit"
"""The name under which a store outage the audit waits out shows in ``OUTAGES`` (``/healthz``)."""


class ExecutionAudit:
    """Records runs through ``record(session_id, command, ctx, seen_version)`` on a task of its own."""

    def __init__(self, record: Recorder, *, retry_delays: tuple[float, ...] = RETRY_DELAYS,
                 max_queued: int = MAX_QUEUED) -> None:
        self._record = record
        self._delays = retry_delays
        self._max_queued = max_queued
        self._queue: asyncio.Queue[Item] = asyncio.Queue(max_queued)
        self._worker: asyncio.Task[None] | None = None
        self._current: Item | None = None
        self.recorded = 0
        """How many records were written (tests, logs)."""

    async def submit(self, session_id: str, command: RecordExecution, ctx: Context,
                     seen_version: int | None = None) -> None:
        """Queues the record of one run (at once, unless ``MAX_QUEUED`` records wait already)."""
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain(), name="berth-execution-audit")
        await self._queue.put((session_id, command, ctx, seen_version))

    async def close(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Writes what is queued (waiting up to ``timeout`` seconds), then stops; logs every run left."""
        if self._worker is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._queue.join()
        except TimeoutError:
            pass
        current = self._current
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)
        self._worker = None
        left = ([current] if current is not None else []) + _take_all(self._queue)
        self._queue = asyncio.Queue(self._max_queued)  # a restarted gateway may run in another event loop
        for session_id, command, _, _ in left:
            log.error("execution %s of session %s not recorded (or not confirmed): the gateway stopped before "
                      "the store answered", command.run_id, session_id)

    async def _drain(self) -> None:
        while True:
            item = await self._queue.get()
            self._current = item
            try:
                await self._write(item)
            finally:
                self._current = None
                self._queue.task_done()

    async def _write(self, item: Item) -> None:
        session_id, command, ctx, seen_version = item
        failures = 0
        while True:
            try:
                await self._record(session_id, command, ctx, seen_version)
            except Exception as exc:  # noqa: BLE001 - waited out, or refused for good (the session is gone)
                away = unavailable_dependency(exc) or ("postgresql" if isinstance(exc, _TRANSIENT) else None)
                if away is None:
                    log.exception("execution %s of session %s cannot be recorded", command.run_id, session_id)
                    return
                delay = self._delays[min(failures, len(self._delays) - 1)]
                failures += 1
                OUTAGES.failed(OUTAGE, away, exc)
                await asyncio.sleep(delay)
                continue
            if failures:
                OUTAGES.recovered(OUTAGE)
            self.recorded += 1
            return


def _take_all(queue: asyncio.Queue[Item]) -> list[Item]:
    items: list[Item] = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items
