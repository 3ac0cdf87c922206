"""How a NATS connection's outages are logged: once each, not at every attempt.

nats-py's default error callback logs every error as an ERROR with its traceback: while NATS restarts, every
connection of every service logged one at each reconnect attempt (five a second). ``OutageLog`` gives a
connection's callbacks instead: a connection error is one WARNING when the outage begins (no traceback: the
error says what happened), the reconnection an INFO line with the outage's length, and any other error (a
permission refused, a slow consumer) an ERROR, as before but without a traceback nobody can act on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from services.common.transient import NATS, unavailable_dependency

__all__ = ["OutageLog"]

log = logging.getLogger(__name__)


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

    def callbacks(self) -> dict[str, Any]:
        """Returns the ``nats.connect`` options that install this log."""
        return {"error_cb": self.error, "reconnected_cb": self.reconnected}

    async def error(self, exc: Exception) -> None:
        """Logs ``exc``: a connection error once per outage, any other as an error."""
        if not _server_away(exc):
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
