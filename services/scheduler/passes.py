"""Runs scheduling passes when the snapshot changes: one at a time, bursts coalesced.

There is no fixed tick. ``notify`` marks the snapshot as changed; the loop runs a
pass, and runs another one afterwards if anything changed meanwhile. A pass
plans with the pure ``first_fit`` and applies the plan through ``place`` (one
transaction); the fresh states it returns refresh the snapshot.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Mapping, Sequence

from contracts.session import KernelPlacement
from domain.placement import first_fit
from services.scheduler.scheduling import Outcome
from services.scheduler.snapshot import Snapshot

__all__ = ["PassRunner", "Place"]

log = logging.getLogger(__name__)

Place = Callable[[Mapping[str, Sequence[KernelPlacement]]], Awaitable[Outcome]]

MAX_RERUNS = 3
"""Passes run back to back after refused placements before waiting for a new change."""
RETRY_DELAYS = (0.2, 1.0, 5.0)
"""Waits before retrying after a pass failed (the store was unreachable, say)."""


class PassRunner:
    """Triggers, coalesces and runs scheduling passes over a snapshot."""

    def __init__(self, snapshot: Snapshot, place: Place) -> None:
        self._snapshot = snapshot
        self._place = place
        self._wake = asyncio.Event()
        self._reruns = 0
        self._failures = 0
        self._reasons: dict[str, str] = {}
        self.passes = 0

    def notify(self) -> None:
        """Marks the snapshot as changed in a way that may allow a placement."""
        self._reruns = 0
        self._wake.set()

    async def run(self, stop: asyncio.Event, ready: asyncio.Event) -> None:
        """Runs passes until ``stop`` is set, starting once ``ready`` (the snapshot caught up) is set."""
        if not await _first(ready, stop):
            return
        self._wake.set()
        while await _first(self._wake, stop):
            self._wake.clear()
            await self.run_pass()

    async def run_pass(self) -> Outcome | None:
        """Plans and applies one pass; returns what it applied, None when it placed nothing."""
        self.passes += 1
        plan = first_fit(self._snapshot.pending(), self._snapshot.agents())
        self._log_reasons(plan.pending_reasons)
        if not plan.placements:
            return None
        try:
            outcome = await self._place(plan.placements)
        except Exception:  # noqa: BLE001 - the pass is retried later, the service goes on
            delay = RETRY_DELAYS[min(self._failures, len(RETRY_DELAYS) - 1)]
            self._failures += 1
            log.exception("scheduling pass failed; retrying in %.1fs", delay)
            asyncio.get_running_loop().call_later(delay, self._wake.set)
            return None
        self._failures = 0
        self._snapshot.refresh(outcome.agents, [*outcome.placed, *outcome.gone])
        if outcome.placed:
            log.info("placed %d session(s): %s", len(outcome.placed), ", ".join(outcome.placed))
        if (outcome.skipped or outcome.gone) and self._reruns < MAX_RERUNS:
            self._reruns += 1  # the snapshot was stale; re-plan with the fresh states
            self._wake.set()
        return outcome

    def _log_reasons(self, reasons: dict[str, str]) -> None:
        for session_id, reason in reasons.items():
            if self._reasons.get(session_id) != reason:
                log.info("session %s stays pending: %s", session_id, reason)
        self._reasons = dict(reasons)


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
