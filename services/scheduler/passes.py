"""Runs scheduling passes when the snapshot changes: one at a time, bursts coalesced.

There is no fixed tick. ``notify`` marks the snapshot as changed; the loop runs a
pass, and another one afterwards if anything changed meanwhile. A pass plans with the
pure ``domain.scheduling.plan``, turns the plan into events (``decide_pass``) and
records them in one transaction; its own events then update the snapshot at once.

When the transaction is refused because an aggregate moved on behind the snapshot (the
controller released a kernel on an agent of the plan, a user cancelled a session), the pass
is not thrown away: the snapshot catches up with only the events it missed on the aggregates
the pass writes (one indexed read, whatever their age), the same plan is decided again against
the fresh states — a placement that no longer fits, or a session no longer pending, is left
out on its own, as Nomad's plan applier commits a plan partially — and the rest is recorded.
So placements keep flowing while the controller writes, and a conflict costs one small read,
not a replan over reloaded histories. A plan's ``wake_at`` (a ``starts_at``, a pending
timeout) sets a timer for the next pass.

The snapshot keeps no request's free-form fields (startup command, mounts: they made its checkpoint
too large to write); a pass reads the requests of the sessions it places or cancels from the store
(their histories, short while they are pending: an indexed read per ``READ_BATCH`` of them) before
deciding.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Awaitable, Callable, Mapping, Sequence

from contracts.envelope import Event, utc_now
from contracts.session import SessionRequested
from domain.emitting import Context
from domain.scheduling import plan as make_plan
from services.common.store import ConcurrencyError
from services.common.waiting import until
from services.scheduler.dependencies import session_outcome
from services.scheduler.decisions import MAX_PLACEMENTS, Decisions, decide_pass, sessions_to_read
from services.scheduler.snapshot import Snapshot
from services.common.transient import OUTAGES, unavailable_dependency

__all__ = ["PassRunner", "PassStats"]

log = logging.getLogger(__name__)

Record = Callable[[Sequence[Event]], Awaitable[int | None]]
CatchUp = Callable[[Mapping[str, int]], Awaitable[list[Event]]]
"""Returns the events after the given version of each aggregate, in store order."""

MAX_REBASES = 5
"""Catch-ups of one pass after conflicts before it waits for the next change."""
MAX_RERUNS = 3
"""Passes run back to back after refused placements before waiting for a new change."""
RETRY_DELAYS = (0.2, 1.0, 5.0)
"""Waits before retrying after a pass failed (the store was unreachable, say)."""
READ_BATCH = 100
"""Sessions whose requests one read of the store asks for (a pass places at most ``MAX_PLACEMENTS``)."""


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
        self, snapshot: Snapshot, record: Record, catch_up: CatchUp, context: Callable[[], Context],
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self._snapshot = snapshot
        self._record = record
        self._catch_up = catch_up
        self._context = context
        self._clock = clock
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._failures = 0
        self._reruns = 0
        self._round_robin: dict[str, int] = {}
        self.stats = PassStats()
        self.max_placements = MAX_PLACEMENTS

    def _retry_later(self, exc: Exception, what: str) -> None:
        """Wakes the runner again after the next of ``RETRY_DELAYS``: a dependency away is told to ``OUTAGES``
        (logged once, shown in health), anything else logged with its traceback each time."""
        delay = RETRY_DELAYS[min(self._failures, len(RETRY_DELAYS) - 1)]
        self._failures += 1
        away = unavailable_dependency(exc)
        if away is not None:
            OUTAGES.failed("scheduler", away, exc)
        else:
            log.error("%s; retrying in %.1fs", what, delay, exc_info=exc)
        asyncio.get_running_loop().call_later(delay, self._wake.set)

    def notify(self) -> None:
        """Marks the snapshot as changed in a way that may allow a placement."""
        self._reruns = 0
        self._wake.set()

    async def run(self, stop: asyncio.Event, ready: asyncio.Event) -> None:
        """Runs passes until ``stop`` is set, starting once ``ready`` (the snapshot caught up) is set."""
        if not await until(ready, stop):
            return
        self._wake.set()
        try:
            while await until(self._wake, stop):
                self._wake.clear()
                await self.run_pass()
        finally:
            if self._timer is not None:
                self._timer.cancel()

    async def run_pass(self) -> Decisions | None:
        """Plans and records one pass; returns its decisions, None when it wrote nothing."""
        self.stats.passes += 1
        unresolved = self._snapshot.unresolved_dependencies()
        if unresolved:
            await self._resolve(unresolved)
        started = time.perf_counter()
        now = self._clock()
        ctx = self._context()
        try:
            plan = make_plan(self._snapshot.view(self._round_robin), self._snapshot.pending(), now)
            requests = await self._read_requests(sessions_to_read(plan, self.max_placements))
            decisions = decide_pass(plan, self._snapshot, requests, ctx, max_placements=self.max_placements)
        except Exception as exc:  # noqa: BLE001 - a pass that cannot be planned is retried; the service goes on
            self._retry_later(exc, "scheduling pass could not be planned")
            return None
        self.stats.plan_seconds += time.perf_counter() - started
        self._set_timer(plan.wake_at, now)
        started = time.perf_counter()
        rebases = 0
        while decisions.events:
            try:
                await self._record(decisions.events)
                break
            except ConcurrencyError:
                self.stats.conflicts += 1
                if rebases == MAX_REBASES:
                    self._wake.set()  # plan anew on the caught-up snapshot
                    return None
                if not await self._rebase(decisions.events):
                    return None
                rebases += 1
                decisions = decide_pass(plan, self._snapshot, requests, ctx, max_placements=self.max_placements)
            except Exception as exc:  # noqa: BLE001 - the pass is retried later, the service goes on
                self._retry_later(exc, "scheduling pass failed")
                return None
        if not decisions.events:
            return None
        self.stats.record_seconds += time.perf_counter() - started
        self._failures = 0
        OUTAGES.recovered("scheduler")
        self._round_robin = dict(plan.round_robin)
        for event in decisions.events:
            self._snapshot.apply(event)
        self.stats.placed += len(decisions.placed)
        if decisions.placed:
            log.info("placed %d session(s)%s", len(decisions.placed),
                     f" after {rebases} catch-up(s)" if rebases else "")
        if decisions.reasons_left or decisions.placements_left:
            self._wake.set()  # record the rest of the changed pending reasons, place the rest
        if decisions.refused and self._reruns < MAX_RERUNS:
            self._reruns += 1  # the plan and the aggregates disagreed: plan again
            self._wake.set()
        return decisions

    async def _read_requests(self, session_ids: list[str]) -> dict[str, SessionRequested]:
        """Returns the requests of the sessions a pass places or cancels, as the store has them (``READ_BATCH``
        sessions a read)."""
        requests: dict[str, SessionRequested] = {}
        for at in range(0, len(session_ids), READ_BATCH):
            events = await self._catch_up(dict.fromkeys(session_ids[at:at + READ_BATCH], 0))
            requests.update((e.originator_id, e) for e in events if isinstance(e, SessionRequested))
        return requests

    async def _rebase(self, events: Sequence[Event]) -> bool:
        """Brings the snapshot up to date on the aggregates ``events`` write; False when it could not
        (the next change, or a timer, runs the pass again). An aggregate whose missed events the snapshot
        counts as applied already (a state that skipped one, as an older version's snapshot of an agent that
        destroyed an orphan container: every pass conflicted on it for ever) is forgotten and reloaded whole."""
        seen: dict[str, int] = {}
        for event in events:
            seen[event.originator_id] = min(seen.get(event.originator_id, event.originator_version),
                                            event.originator_version)
        known = {aggregate: version - 1 for aggregate, version in seen.items()}
        try:
            missed = await self._catch_up(known)
            counted = sorted({event.originator_id for event in missed if self._snapshot.knows(event)})
            if counted:  # counted as applied, yet the write conflicted on them: reload them whole, once
                log.warning("the scheduler's snapshot counted events of %s that its state does not hold; reloading "
                            "their history", ", ".join(counted))
                self._snapshot.forget(counted)
                reloaded = set(counted)
                missed = [e for e in missed if e.originator_id not in reloaded]
                missed += await self._catch_up(dict.fromkeys(counted, 0))
        except Exception:  # noqa: BLE001 - the next pass conflicts again and retries the catch-up
            log.exception("could not catch up after a conflict")
            asyncio.get_running_loop().call_later(RETRY_DELAYS[0], self._wake.set)
            return False
        for event in missed:
            self._snapshot.apply(event)
        log.info("scheduling pass conflicted with a concurrent change; caught up %d event(s) on %d of its"
                 " %d aggregate(s) and deciding the same plan again",
                 len(missed), len({e.originator_id for e in missed}), len(known))
        if not missed:  # nothing to catch up with: plan anew a little later
            asyncio.get_running_loop().call_later(RETRY_DELAYS[0], self._wake.set)
            return False
        return True

    async def _resolve(self, dependencies: set[str]) -> None:
        """Looks up in the store how dependencies the snapshot cannot tell finished (they finished
        before the session that waits on them was requested, or before the snapshot's start)."""
        try:
            events = await self._catch_up(dict.fromkeys(dependencies, 0))
        except Exception:  # noqa: BLE001 - the sessions waiting on them stay pending; the next pass asks again
            log.exception("could not look up %d dependency(ies) in the store", len(dependencies))
            asyncio.get_running_loop().call_later(RETRY_DELAYS[0], self._wake.set)
            return
        outcomes: dict[str, bool | None] = dict.fromkeys(dependencies)
        for event in events:
            ok = session_outcome(event)
            if ok is not None:
                outcomes[event.originator_id] = ok
        self._snapshot.resolve(outcomes)

    def _set_timer(self, wake_at: dt.datetime | None, now: dt.datetime) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if wake_at is not None:
            delay = max(0.0, (wake_at - now).total_seconds())
            self._timer = asyncio.get_running_loop().call_later(delay, self._wake.set)


