"""Runs scheduling passes when the snapshot changes: one at a time, bursts coalesced.

There is no fixed tick. ``notify`` marks the snapshot as changed; the loop runs a
pass, and another one afterwards if anything changed meanwhile. A pass plans with the
pure ``domain.scheduling.plan``, turns the plan into events (``decide_pass``) and
records them in one transaction; its own events then update the snapshot at once.
When a pass is refused for a stale snapshot, the aggregates it touched are reloaded
from the store and the pass runs again. A plan's ``wake_at`` (a ``starts_at``, a
pending timeout) sets a timer for the next pass.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Awaitable, Callable, Iterable, Sequence

from contracts.envelope import Event, utc_now
from domain.emitting import Context
from domain.scheduling import plan as make_plan
from services.common.store import ConcurrencyError
from services.scheduler.decisions import Decisions, decide_pass
from services.scheduler.snapshot import Snapshot

__all__ = ["PassRunner", "PassStats"]

log = logging.getLogger(__name__)

Record = Callable[[Sequence[Event]], Awaitable[int | None]]
Reload = Callable[[Iterable[str]], Awaitable[list[Event]]]

MAX_RERUNS = 3
"""Passes run back to back after refused placements before waiting for a new change."""
RETRY_DELAYS = (0.2, 1.0, 5.0)
"""Waits before retrying after a pass failed (the store was unreachable, say)."""


class PassStats:
    """Counters of the passes run so far (logged, and read by tests and benchmarks)."""

    def __init__(self) -> None:
        self.passes = 0
        self.placed = 0
        self.conflicts = 0
        self.plan_seconds = 0.0
        self.record_seconds = 0.0


class PassRunner:
    """Triggers, coalesces and runs scheduling passes over a snapshot."""

    def __init__(
        self, snapshot: Snapshot, record: Record, reload: Reload, context: Callable[[], Context],
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self._snapshot = snapshot
        self._record = record
        self._reload = reload
        self._context = context
        self._clock = clock
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._failures = 0
        self._reruns = 0
        self._round_robin: dict[str, int] = {}
        self.stats = PassStats()

    def notify(self) -> None:
        """Marks the snapshot as changed in a way that may allow a placement."""
        self._reruns = 0
        self._wake.set()

    async def run(self, stop: asyncio.Event, ready: asyncio.Event) -> None:
        """Runs passes until ``stop`` is set, starting once ``ready`` (the snapshot caught up) is set."""
        if not await _first(ready, stop):
            return
        self._wake.set()
        try:
            while await _first(self._wake, stop):
                self._wake.clear()
                await self.run_pass()
        finally:
            if self._timer is not None:
                self._timer.cancel()

    async def run_pass(self) -> Decisions | None:
        """Plans and records one pass; returns its decisions, None when it wrote nothing."""
        self.stats.passes += 1
        started = time.perf_counter()
        now = self._clock()
        plan = make_plan(self._snapshot.view(self._round_robin), self._snapshot.pending(), now)
        decisions = decide_pass(plan, self._snapshot, self._context())
        self.stats.plan_seconds += time.perf_counter() - started
        self._set_timer(plan.wake_at, now)
        if not decisions.events:
            return None
        started = time.perf_counter()
        try:
            await self._record(decisions.events)
        except ConcurrencyError:
            self.stats.conflicts += 1
            log.info("scheduling pass conflicted with a concurrent change; reloading %d aggregates",
                     len(decisions.aggregates))
            await self._refresh(decisions.aggregates)
            return None
        except Exception:  # noqa: BLE001 - the pass is retried later, the service goes on
            delay = RETRY_DELAYS[min(self._failures, len(RETRY_DELAYS) - 1)]
            self._failures += 1
            log.exception("scheduling pass failed; retrying in %.1fs", delay)
            asyncio.get_running_loop().call_later(delay, self._wake.set)
            return None
        self.stats.record_seconds += time.perf_counter() - started
        self._failures = 0
        self._round_robin = dict(plan.round_robin)
        for event in decisions.events:
            self._snapshot.apply(event)
        self.stats.placed += len(decisions.placed)
        if decisions.placed:
            log.info("placed %d session(s)", len(decisions.placed))
        if decisions.reasons_left:
            self._wake.set()  # record the rest of the changed pending reasons
        if decisions.refused and self._reruns < MAX_RERUNS:
            self._reruns += 1  # the plan and the aggregates disagreed: plan again
            self._wake.set()
        return decisions

    async def _refresh(self, aggregates: set[str]) -> None:
        try:
            history = await self._reload(aggregates)
        except Exception:  # noqa: BLE001 - the next pass conflicts again and retries the reload
            log.exception("could not reload aggregates after a conflict")
            asyncio.get_running_loop().call_later(RETRY_DELAYS[0], self._wake.set)
            return
        self._snapshot.forget(aggregates)
        for event in history:
            self._snapshot.apply(event)
        self._wake.set()

    def _set_timer(self, wake_at: dt.datetime | None, now: dt.datetime) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if wake_at is not None:
            delay = max(0.0, (wake_at - now).total_seconds())
            self._timer = asyncio.get_running_loop().call_later(delay, self._wake.set)


async def _first(event: asyncio.Event, stop: asyncio.Event) -> bool:
    """Waits for ``event`` or ``stop``; returns True when ``event`` is set and ``stop`` is not."""
    if not event.is_set() and not stop.is_set():
        waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
    return event.is_set() and not stop.is_set()
