"""How a NATS connection's outages are logged: once each, not at every attempt.

nats-py's default error callback logs every error as an ERROR with its traceback: while NATS restarts, every
connection of every service logged one at each reconnect attempt (five a second). ``OutageLog`` gives a
connection's callbacks instead: a connection error is one WARNING when the outage begins (no traceback: the
error says what happened), the reconnection an INFO line with the outage's length, and any other error (a
permission refused) an ERROR, as before but without a traceback nobody can act on.

A slow consumer is nats-py dropping a message of a subscription whose queue is full (a run's output in the gateway
is bounded so: ``services.gateway.execution.run_output``). nats-py reports each message dropped: one ERROR line
each was thousands a second while runs flooded, and their cost slowed the gateway further. The first drop is one
ERROR line; the next are counted, one ERROR line saying how many every ``DROP_REPORT_INTERVAL`` seconds while
they go on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import nats.errors

from services.common.transient import NATS, unavailable_dependency

__all__ = ["DROP_REPORT_INTERVAL", "OutageLog"]

log = logging.getLogger(__name__)

DROP_REPORT_INTERVAL = 10.0
"""Seconds between two lines counting a connection's messages dropped by slow consumers."""
_SUBJECTS_NAMED = 3
"""Subjects of dropped messages a count line names (it counts the others)."""


def _server_away(exc: Exception) -> bool:
    """What a connection meets while its server is away: a socket error of a reconnect attempt, or what
    ``transient`` counts as NATS unavailable (``UnexpectedEOF``, no servers, a timeout, ...)."""
    return isinstance(exc, (OSError, asyncio.TimeoutError)) or unavailable_dependency(exc) == NATS


class OutageLog:
    """The ``error_cb`` and ``reconnected_cb`` of one connection, named ``name`` in what they log."""

    def __init__(self, name: str, clock: Any = time.monotonic) -> None:
        self._name = name
        self._clock = clock
        self._since: float | None = None
        self._drops: _Drops | None = None
        """The drops counted since the last line about them; None while none are (the next is logged at once)."""

    def callbacks(self) -> dict[str, Any]:
        """Returns the ``nats.connect`` options that install this log."""
        return {"error_cb": self.error, "reconnected_cb": self.reconnected}

    async def error(self, exc: Exception) -> None:
        """Logs ``exc``: a connection error once per outage, dropped messages counted (see the module), any other
        as an error."""
        if isinstance(exc, nats.errors.SlowConsumerError):
            self.dropped(str(exc.subject))
        elif not _server_away(exc):
            log.error("%s: NATS error: %s: %s", self._name, type(exc).__name__, exc)
        elif self._since is None:
            self._since = self._clock()
            log.warning("%s: NATS unreachable (%s: %s); reconnecting until it is back", self._name,
                        type(exc).__name__, exc)
        else:
            log.debug("%s: NATS still unreachable (%s: %s)", self._name, type(exc).__name__, exc)

    async def reconnected(self) -> None:
        """Logs the end of the outage."""
        since, self._since = self._since, None
        if since is None:
            log.info("%s: NATS reconnected", self._name)
        else:
            log.info("%s: NATS reachable again after %.1f s", self._name, self._clock() - since)

    def dropped(self, subject: str) -> None:
        """Counts a message of ``subject`` dropped by a slow consumer; logs the first at once."""
        if self._drops is not None:
            self._drops.count(subject)
            return
        log.error("%s: NATS slow consumer: a message of %s dropped (its subscription's queue is full); more drops "
                  "are counted, one line every %.0f s", self._name, subject, DROP_REPORT_INTERVAL)
        self._drops = _Drops(self._clock())
        asyncio.get_running_loop().call_later(DROP_REPORT_INTERVAL, self.report_drops)

    def report_drops(self) -> None:
        """Logs the drops counted since the last line, and counts on while they go on (else the next is logged
        at once)."""
        drops, self._drops = self._drops, None
        if drops is None or not drops.messages:
            return
        named = ", ".join(sorted(drops.subjects)[:_SUBJECTS_NAMED])
        others = len(drops.subjects) - _SUBJECTS_NAMED
        log.error("%s: NATS slow consumer: %d more messages dropped in %.0f s, of %d subjects (%s%s)", self._name,
                  drops.messages, self._clock() - drops.since, len(drops.subjects), named,
                  f" and {others} more" if others > 0 else "")
        self._drops = _Drops(self._clock())
        asyncio.get_running_loop().call_later(DROP_REPORT_INTERVAL, self.report_drops)


class _Drops:
    """Messages dropped since ``since``, and their subjects (at most ``_MAX_SUBJECTS`` kept)."""

    _MAX_SUBJECTS = 1000

    def __init__(self, since: float) -> None:
        self.since = since
        self.messages = 0
        self.subjects: set[str] = set()

    def count(self, subject: str) -> None:
        self.messages += 1
        if len(self.subjects) < self._MAX_SUBJECTS:
            self.subjects.add(subject)
