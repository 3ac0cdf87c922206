"""Which failures are transient — PostgreSQL, NATS or Docker unavailable for now — and the
process-wide record of the outages being waited out.

A transient failure says nothing about the message being handled: the same message succeeds
once the dependency is back. So it is retried with backoff, without limit, and never
acknowledged or dead-lettered because of it (``services.common.flow``). Only a message that
cannot be decoded or that violates an invariant (``PermanentError``) is poison.

``OUTAGES`` holds, per waiting component (a durable consumer, a follow, the projector), the
dependency it waits for, since when and the last error: ``describe()`` is what a health
answer shows; every start and end of a wait is logged.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import aiodocker.exceptions
import eventsourcing.persistence as es
import nats.errors
import nats.js.errors
import psycopg

__all__ = ["OUTAGES", "Outage", "Outages", "UnavailableError", "backoff", "unavailable_dependency", "unavailable_message"]

log = logging.getLogger(__name__)

POSTGRESQL, NATS, DOCKER = "postgresql", "nats", "docker"

BACKOFF_FIRST = 0.2
BACKOFF_MAX = 5.0
"""Seconds between two tries while a dependency is away: doubling from the first to the max."""

DOCKER_UNREACHABLE = 900
"""aiodocker's status for "cannot connect to the Docker engine"."""

_CHAIN_DEPTH = 8

_PSYCOPG = (psycopg.OperationalError, psycopg.InterfaceError)
_EVENTSOURCING = (es.OperationalError, es.InterfaceError)
_PG_TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")
"""SQLSTATE classes of a server away or busy for now: connection exception, transaction rollback
(serialization failure, deadlock), insufficient resources, operator intervention (admin shutdown,
cannot connect now, query canceled by a timeout), system error."""
_PG_TRANSIENT_STATES = ("55P03", "55006")
"""lock_not_available, object_in_use."""
_NATS = (
    nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError, nats.errors.ConnectionDrainingError,
    nats.errors.NoServersError, nats.errors.TimeoutError, nats.errors.NoRespondersError,
    nats.errors.StaleConnectionError, nats.errors.OutboundBufferLimitError, nats.errors.FlushTimeoutError,
    nats.js.errors.ServiceUnavailableError, nats.js.errors.NoStreamResponseError,
)


class UnavailableError(Exception):
    """Raised (from the original error) by code that knows a dependency is away for now:
    ``dependency`` names it. Treated as transient like the errors recognised here."""

    def __init__(self, dependency: str, message: str) -> None:
        super().__init__(message)
        self.dependency = dependency


def unavailable_dependency(error: BaseException | None) -> str | None:
    """Returns ``postgresql``, ``nats`` or ``docker`` when ``error`` (or what caused it) says that
    dependency is unavailable, None for any other error."""
    for error in _chain(error):
        if isinstance(error, UnavailableError):
            return error.dependency
        if isinstance(error, _PSYCOPG):
            return POSTGRESQL if _postgresql_away(error) else None
        if isinstance(error, _EVENTSOURCING) and not isinstance(error.__cause__, psycopg.Error):
            return POSTGRESQL  # (with a psycopg cause, the cause decides)
        if isinstance(error, _NATS):
            return NATS
        if isinstance(error, aiodocker.exceptions.DockerError) and error.status == DOCKER_UNREACHABLE:
            return DOCKER
    return None


def _chain(error: BaseException | None) -> Iterator[BaseException]:
    """Yields ``error`` and what caused it, in turn (at most ``_CHAIN_DEPTH`` of them)."""
    for _ in range(_CHAIN_DEPTH):
        if error is None:
            return
        yield error
        error = error.__cause__ or error.__context__


DISK_FULL = "53100"
"""PostgreSQL's SQLSTATE for "no space left on device" (``psycopg.errors.DiskFull``)."""


def unavailable_message(away: str, error: BaseException | None) -> str:
    """Returns what a client is told of an outage of ``away`` that ``error`` met: that it is unavailable and to
    retry; for a PostgreSQL whose disk is full (it answers, but can write nothing until space is freed), that."""
    if away == POSTGRESQL and _sqlstate(error) == DISK_FULL:
        return "postgresql cannot write: its disk is full (nothing was recorded); retry once space is freed there"
    return f"{away} is unavailable; retry"


def _sqlstate(error: BaseException | None) -> str | None:
    """Returns the SQLSTATE of the first psycopg error in ``error``'s chain (None: none has one)."""
    return next((e.sqlstate for e in _chain(error) if isinstance(e, psycopg.Error) and e.sqlstate), None)


def _postgresql_away(error: psycopg.Error) -> bool:
    """True for an error without a server code (no connection, pool timeout: psycopg_pool's
    ``PoolTimeout`` is an ``OperationalError``) or with a code of a server away or busy; False
    for one the same statement would meet again (a program limit exceeded, say)."""
    state = error.sqlstate
    return state is None or state[:2] in _PG_TRANSIENT_CLASSES or state in _PG_TRANSIENT_STATES


def backoff(tries: int) -> float:
    """Returns the seconds to wait after ``tries`` failed tries (1, 2, …): doubling, capped."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(tries - 1, 0))


@dataclass(frozen=True)
class Outage:
    """A component waiting for a dependency: since when, how many tries, the last error."""

    component: str
    dependency: str
    since: dt.datetime
    tries: int
    error: str

    def describe(self) -> str:
        return (f"{self.component} waiting for {self.dependency} since {self.since:%H:%M:%S} UTC "
                f"({self.tries} tries): {self.error}")


class Outages:
    """The outages this process is waiting out, one per component."""

    LOG_EVERY = 10
    """After the first failed try, one warning every this many tries (the others at DEBUG)."""

    def __init__(self) -> None:
        self._current: dict[str, Outage] = {}

    def failed(self, component: str, dependency: str, error: BaseException) -> Outage:
        """Records one more failed try of ``component`` because ``dependency`` is away."""
        previous = self._current.get(component)
        outage = Outage(component, dependency, previous.since if previous else dt.datetime.now(dt.UTC),
                        (previous.tries if previous else 0) + 1, f"{type(error).__name__}: {error}"[:500])
        self._current[component] = outage
        level = logging.WARNING if outage.tries == 1 or outage.tries % self.LOG_EVERY == 0 else logging.DEBUG
        log.log(level, "%s; retrying, nothing is acknowledged meanwhile", outage.describe())
        return outage

    def recovered(self, component: str) -> None:
        """Forgets the outage of ``component`` (its last try succeeded), saying so."""
        outage = self._current.pop(component, None)
        if outage is not None:
            waited = (dt.datetime.now(dt.UTC) - outage.since).total_seconds()
            log.warning("%s: %s is back after %.1f s and %d tries", component, outage.dependency, waited, outage.tries)

    def forget(self, component: str) -> None:
        """Forgets the outage of ``component`` (it stopped before the dependency came back)."""
        self._current.pop(component, None)

    def current(self) -> list[Outage]:
        """Returns the outages being waited out now, oldest first."""
        return sorted(self._current.values(), key=lambda o: o.since)

    def describe(self) -> list[str]:
        """Returns one line per outage (for a health answer)."""
        return [outage.describe() for outage in self.current()]


OUTAGES = Outages()
"""This process's outages."""
