"""Session timeouts: idle timeout, maximum lifetime and batch timeout.

``Deadlines`` (no I/O, clock injected) learns from events which sessions run, since
when, when they last executed code, and each keypair's resource policy; it says which
sessions are due and when the next deadline falls. ``enforce_timeouts`` sleeps until
that deadline or until an event changes the picture (never polling), then terminates
each due session through ``Sessions.terminate`` with the reason:

* ``max-lifetime``: the owner keypair's ``max_session_lifetime`` seconds after RUNNING;
* ``idle-timeout``: ``idle_timeout`` seconds without an ``ExecutionFinished`` since RUNNING
  or the last execution (interactive sessions; a batch session runs its task), unless one of its
  kernels is running an execution then (``spare_busy``: its agent's heartbeat says so), which counts
  as activity at that moment: a long computation is not idleness;
* ``task-timeout``: a batch session's ``batch_timeout`` seconds after RUNNING.

0 means no limit. A keypair the controller has not seen created has no limits. The
current policy applies, so changing a policy changes the deadlines of running sessions.
Times are the events' timestamps (UTC), compared with the injected wall clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from functools import singledispatchmethod
from typing import Awaitable, Callable, Iterable, Mapping, NamedTuple, Protocol

import msgspec

from contracts import session as sev
from contracts import tenancy as tev
from contracts.envelope import Event, utc_now
from contracts.status import Reason, SessionStatus, SessionType
from contracts.tenancy import KeypairLimits
from domain.errors import DomainError
from services.application.policies import POLICY_EVENTS, KeypairPolicies
from services.common.waiting import first_of
from services.controller.deadline_index import DeadlineIndex

__all__ = ["TIMEOUT_EVENTS", "Clock", "Deadlines", "DueSessions", "Postponed", "enforce_timeouts", "spare_busy"]

log = logging.getLogger(__name__)

TIMEOUT_EVENTS: tuple[type[Event], ...] = (
    sev.SessionRequested,
    sev.SessionStatusChanged,
    sev.ExecutionFinished,
    *POLICY_EVENTS,
)
"""The events ``Deadlines`` learns from."""

Clock = Callable[[], dt.datetime]
_NO_LIMITS = KeypairLimits()
_STOPPED = frozenset({SessionStatus.TERMINATING, SessionStatus.TERMINATED, SessionStatus.ERROR, SessionStatus.CANCELLED})


class _Watch(msgspec.Struct, kw_only=True):
    """What the deadlines of one session depend on."""

    owner: str
    batch: bool
    batch_timeout: int
    running_since: dt.datetime | None = None
    last_activity: dt.datetime | None = None
    retry_at: dt.datetime | None = None


class Deadlines:
    """Which running sessions are due for termination, and when the next one is."""

    def __init__(self, clock: Clock = utc_now) -> None:
        self._clock = clock
        self._watch: dict[str, _Watch] = {}
        self._of_owner: dict[str, set[str]] = {}
        self._index = DeadlineIndex()
        self._policies = KeypairPolicies()

    @singledispatchmethod
    def apply(self, event: Event) -> None:
        """Learns from ``event`` (other events change nothing)."""
        changed = self._policies.apply(event)
        if isinstance(event, (tev.KeypairCreated, tev.KeypairPolicyChanged)):
            self._reindex(self._of_owner.get(event.originator_id, ()))
        elif changed:  # a policy's limits: every session may be concerned (an administrator's rare act)
            self._reindex(list(self._watch))

    @apply.register
    def _(self, event: sev.SessionRequested) -> None:
        spec = event.spec
        batch = spec.session_type is SessionType.BATCH
        self._watch[event.originator_id] = _Watch(owner=event.owner, batch=batch, batch_timeout=spec.batch_timeout)
        self._of_owner.setdefault(event.owner, set()).add(event.originator_id)

    @apply.register
    def _(self, event: sev.SessionStatusChanged) -> None:
        watch = self._watch.get(event.originator_id)
        if event.status in _STOPPED:
            self.done(event.originator_id)
        elif event.status is SessionStatus.RUNNING and watch is not None and watch.running_since is None:
            watch.running_since = watch.last_activity = event.timestamp
            self._reindex((event.originator_id,))

    @apply.register
    def _(self, event: sev.ExecutionFinished) -> None:
        watch = self._watch.get(event.originator_id)
        if watch is not None and watch.last_activity is not None:
            watch.last_activity = max(watch.last_activity, event.timestamp)
            self._reindex((event.originator_id,))

    def _reindex(self, session_ids: Iterable[str]) -> None:
        for session_id in session_ids:
            found = self.deadline(session_id)
            self._index.set(session_id, None if found is None else found[0])

    def limits_of(self, owner: str) -> KeypairLimits:
        """Returns the limits of keypair ``owner``'s resource policy (none when unknown)."""
        return self._policies.limits_of(owner) or _NO_LIMITS

    def deadline(self, session_id: str) -> tuple[dt.datetime, Reason] | None:
        """Returns when session ``session_id`` is due and why; None when it has no deadline
        (not running, or no limit applies)."""
        watch = self._watch.get(session_id)
        if watch is None or watch.running_since is None:
            return None
        limits = self.limits_of(watch.owner)
        candidates: list[tuple[dt.datetime, int, Reason]] = []
        if watch.batch and watch.batch_timeout > 0:
            candidates.append((watch.running_since + _seconds(watch.batch_timeout), 0, Reason.TASK_TIMEOUT))
        if limits.max_session_lifetime > 0:
            candidates.append((watch.running_since + _seconds(limits.max_session_lifetime), 1, Reason.MAX_LIFETIME))
        if not watch.batch and limits.idle_timeout > 0 and watch.last_activity is not None:
            candidates.append((watch.last_activity + _seconds(limits.idle_timeout), 2, Reason.IDLE_TIMEOUT))
        if not candidates:
            return None
        when, _, reason = min(candidates)
        if watch.retry_at is not None:
            when = max(when, watch.retry_at)
        return when, reason

    def due(self) -> list[tuple[str, Reason]]:
        """Returns the sessions whose deadline has passed, with the reason, by session id."""
        due = []
        for session_id in self._index.due(self._clock()):
            found = self.deadline(session_id)
            if found is not None:
                due.append((session_id, found[1]))
        return due

    def next_deadline(self) -> dt.datetime | None:
        """Returns the earliest deadline of any session, None when there is none."""
        return self._index.earliest()

    def done(self, session_id: str) -> None:
        """Forgets ``session_id``: its termination was requested (or it cannot be terminated)."""
        watch = self._watch.pop(session_id, None)
        self._index.discard(session_id)
        if watch is not None:
            owned = self._of_owner.get(watch.owner, set())
            owned.discard(session_id)
            if not owned:
                self._of_owner.pop(watch.owner, None)

    def active(self, session_id: str, at: dt.datetime | None = None) -> bool:
        """Records activity of ``session_id`` at ``at`` (default now; never later than now): its idle time
        starts again from there (an execution found running, its apps' traffic). Returns whether the session
        is no longer due now."""
        now = self._clock()
        watch = self._watch.get(session_id)
        if watch is not None and watch.last_activity is not None:
            watch.last_activity = max(watch.last_activity, now if at is None else min(at, now))
            self._reindex((session_id,))
        found = self.deadline(session_id)
        return found is None or found[0] > now

    def defer(self, session_id: str, seconds: float) -> None:
        """Postpones the next attempt on ``session_id`` by ``seconds`` (after a failed one)."""
        watch = self._watch.get(session_id)
        if watch is not None:
            watch.retry_at = self._clock() + dt.timedelta(seconds=seconds)
            self._reindex((session_id,))


def _seconds(value: int) -> dt.timedelta:
    return dt.timedelta(seconds=value)


Terminate = Callable[[str, Reason], Awaitable[object]]


class Postponed(Exception):
    """Raised by a ``Terminate`` that found the session must not end now; it has moved the deadline."""


KernelsOf = Callable[[str], Awaitable[list[tuple[str, str]]]]
"""Returns a session's placed kernels as (kernel id, agent id)."""


class KernelActivity(NamedTuple):
    """What an agent's heartbeat says of its kernels' activity (``liveness.kernel_activity``)."""

    busy: frozenset[str] = frozenset()
    """The kernels running an execution now."""
    app_traffic: Mapping[str, float] = {}
    """Per kernel, when its apps last had traffic through the app tunnels (seconds since the epoch)."""


ActivityOn = Callable[[str], Awaitable[KernelActivity]]
"""Returns what an agent's heartbeat says of its kernels' activity."""


def _moment(seconds: float | None) -> dt.datetime | None:
    """The UTC time of ``seconds`` since the epoch; None for none, or for what no time is (a heartbeat's bytes
    are an agent's word: ``nan``, ``1e300``)."""
    try:
        return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def spare_busy(terminate: Terminate, deadlines: Deadlines, kernels_of: KernelsOf, activity_on: ActivityOn) -> Terminate:
    """Returns ``terminate``, except that a session due for ``idle-timeout`` that was active after all is not
    terminated, and ``Postponed`` is raised: a kernel running an execution counts as activity now, traffic to
    its apps as activity when it moved (``Deadlines.active``; traffic older than the idle time does not
    spare it). An agent that cannot be asked (NATS away) has the termination retried."""

    async def terminate_unless_busy(session_id: str, reason: Reason) -> object:
        if reason is Reason.IDLE_TIMEOUT:
            asked: dict[str, KernelActivity] = {}
            for kernel_id, agent_id in await kernels_of(session_id):
                if agent_id not in asked:
                    asked[agent_id] = await activity_on(agent_id)
                activity = asked[agent_id]
                if kernel_id in activity.busy:
                    deadlines.active(session_id)
                    raise Postponed(f"kernel {kernel_id} is running an execution")
                traffic = _moment(activity.app_traffic.get(kernel_id))
                if traffic is not None and deadlines.active(session_id, traffic):
                    raise Postponed(f"kernel {kernel_id}'s apps had traffic since")
        return await terminate(session_id, reason)

    return terminate_unless_busy


class DueSessions(Protocol):
    """What ``enforce_timeouts`` drives: ``Deadlines``, ``stuck.StuckDeadlines``."""

    def due(self) -> list[tuple[str, Reason]]: ...
    def next_deadline(self) -> dt.datetime | None: ...
    def done(self, session_id: str) -> None: ...
    def defer(self, session_id: str, seconds: float) -> None: ...


async def enforce_timeouts(
    deadlines: DueSessions,
    terminate: Terminate,
    changed: asyncio.Event,
    stop: asyncio.Event,
    *,
    clock: Clock = utc_now,
    retry: float = 5.0,
    longest_sleep: float = 60.0,
) -> None:
    """Terminates each session when its deadline passes, until ``stop`` is set.

    Sleeps until the next deadline, or until ``changed`` is set (an event was applied to
    ``deadlines``), at most ``longest_sleep`` seconds (so a jump of the wall clock is noticed).
    A refused termination (the session already ended) is dropped; a failed one is retried
    after ``retry`` seconds.
    """
    while not stop.is_set():
        changed.clear()
        for session_id, reason in deadlines.due():
            try:
                await terminate(session_id, reason)
            except Postponed as exc:
                log.info("session %s not terminated (%s): %s", session_id, reason.value, exc)
                continue
            except DomainError as exc:
                log.info("not terminating session %s (%s): %s", session_id, reason.value, exc)
            except Exception as exc:  # noqa: BLE001 - retried later
                log.warning("could not terminate session %s (%s): %s", session_id, reason.value, exc)
                deadlines.defer(session_id, retry)
                continue
            else:
                log.info("session %s: %s", session_id, reason.value)
            deadlines.done(session_id)
        upcoming = deadlines.next_deadline()
        sleep = longest_sleep if upcoming is None else (upcoming - clock()).total_seconds()
        await first_of(stop, changed, timeout=min(max(sleep, 0.0), longest_sleep))
