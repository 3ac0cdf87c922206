"""Reports how a kernel's preparation advances, throttled so the event store is not flooded.

A backend tells its progress (an image pull's layers and bytes) as often as it likes;
``ProgressReports`` sends at most one ``KernelProgressReport`` per kernel every ``interval``
seconds, and on ``flush`` the last line if it was held back, so the final state is always
reported. Progress is best effort: a report that cannot be sent is logged and skipped, never
a reason to fail the start. Each report has its own message id
(``<agent>:<kernel>:kernel_progress:<n>``): a redelivered assignment sends its first lines
again under the same ids, and the stream stores them once.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Callable

from contracts.envelope import utc_now
from contracts.reports import KernelProgressReport, clip_detail
from services.agent.reporting import Reporter

__all__ = ["INTERVAL", "MAX_PROGRESS_CHARS", "ProgressReports"]

log = logging.getLogger(__name__)

INTERVAL = 2.0
"""Seconds between two progress reports of one kernel."""
MAX_PROGRESS_CHARS = 200
"""A progress line is a status, not a log: longer ones are clipped."""


class ProgressReports:
    """Sends the progress lines of one kernel's preparation, at most one every ``interval`` s."""

    def __init__(self, reporter: Reporter, kernel_id: str, session_id: str, *, interval: float = INTERVAL,
                 monotonic: Callable[[], float] = time.monotonic, clock: Callable[[], dt.datetime] = utc_now) -> None:
        self._reporter = reporter
        self._kernel_id = kernel_id
        self._session_id = session_id
        self._interval = interval
        self._monotonic = monotonic
        self._clock = clock
        self._sent_at: float | None = None
        self._held: str | None = None
        self._last: str | None = None
        self._count = 0

    async def __call__(self, detail: str) -> None:
        """Sends ``detail`` unless one was sent less than ``interval`` seconds ago (then it is
        held back, to be sent by ``flush`` if nothing newer comes)."""
        now = self._monotonic()
        if self._sent_at is not None and now - self._sent_at < self._interval:
            self._held = detail
            return
        await self._send(detail, now)

    async def flush(self) -> None:
        """Sends the line held back, if any: the final state of the preparation."""
        if self._held is not None:
            await self._send(self._held, self._monotonic())

    async def _send(self, detail: str, now: float) -> None:
        self._held = None
        line = clip_detail(detail, MAX_PROGRESS_CHARS)
        if not line or line == self._last:
            return
        self._sent_at, self._last = now, line
        self._count += 1
        report = KernelProgressReport(agent_id=self._reporter.agent_id, observed_at=self._clock(),
                                      kernel_id=self._kernel_id, session_id=self._session_id, detail=line)
        msg_id = self._reporter.kernel_msg_id(report, self._kernel_id, str(self._count))
        try:
            await self._reporter.send(report, msg_id)
        except Exception as exc:  # noqa: BLE001 - progress is best effort; the start goes on
            log.warning("cannot report the progress of kernel %s: %s", self._kernel_id, exc)
