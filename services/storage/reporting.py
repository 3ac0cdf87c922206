"""Publishes the storage service's reports on ``rp.storage.<volume>.<type>``, deduplicated by id.

``send`` waits for the stream's ack, retrying through a NATS outage (used by the folder-event
consumer, which acks its event only after the report is stored). ``post`` queues a report for a
background task that sends it the same way (used by HTTP requests, which must not wait for NATS).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Callable

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import Header

from contracts.subjects import storage_report_subject
from contracts.storage_reports import StorageReport, encode_storage_report
from services.common.report_ids import ReportIds

__all__ = ["Reporter", "new_report_id", "now_utc"]

log = logging.getLogger(__name__)
RETRY = (0.2, 0.5, 1.0, 2.0, 5.0)


def new_report_id() -> str:
    return uuid.uuid4().hex


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Reporter:
    """Sends storage reports; ``published`` keeps the last ones sent (for tests and doctor)."""

    def __init__(self, js: JetStreamContext | None, ids: ReportIds | None = None) -> None:
        """``ids`` makes each report's message id from its ``report_id`` (``report_ids``: keyed with the service's
        credential, so that no agent can have the stream drop a storage report; default: unkeyed)."""
        self._js = js
        self._ids = ids if ids is not None else ReportIds(None)
        self._queue: asyncio.Queue[tuple[StorageReport, Callable[[], None] | None]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def send(self, report: StorageReport) -> None:
        """Publishes ``report`` and waits for its ack, retrying until it is stored."""
        if self._js is None:
            return
        subject = storage_report_subject(report.volume, report.type_name())
        data = encode_storage_report(report)
        attempt = 0
        while True:
            try:
                await self._js.publish(subject, data, headers={Header.MSG_ID.value: self._ids(report.report_id)})
                return
            except (nats.errors.Error, asyncio.TimeoutError, OSError) as exc:
                delay = RETRY[min(attempt, len(RETRY) - 1)]
                attempt += 1
                log.warning("storage report %s not stored yet (%s); retrying in %.1f s", subject, exc, delay)
                await asyncio.sleep(delay)

    def post(self, report: StorageReport, after: Callable[[], None] | None = None) -> None:
        """Queues ``report`` for the background sender (started on first use); ``after()`` runs
        once it is stored."""
        self._queue.put_nowait((report, after))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while not self._queue.empty():
            report, after = self._queue.get_nowait()
            await self.send(report)
            if after is not None:
                after()
            self._queue.task_done()

    async def flush(self) -> None:
        """Waits until every posted report is stored."""
        await self._queue.join()
