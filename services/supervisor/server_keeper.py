"""Keeps ``berth up``'s embedded servers (NATS, PostgreSQL) running: one that ends while Berth runs
(a crash, the OOM killer, a stray ``kill``) is started again on the same state and address, with
backoff while it cannot be. The services wait out the outage as they wait out any other
(reconnecting); before, they waited for a server that never came back, logging twice a second,
until someone restarted ``berth up``."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol, Sequence

from services.common.waiting import first_of

__all__ = ["KEEP_INTERVAL", "KeptServer", "Restartable", "keep_servers"]

log = logging.getLogger(__name__)

KEEP_INTERVAL = 1.0
"""Seconds between two looks at the servers."""
MAX_BACKOFF = 30.0


class Restartable(Protocol):
    """An embedded server: ``NatsServer`` or ``EmbeddedPostgres``."""

    @property
    def pid(self) -> int | None: ...

    def exited(self) -> int | None: ...

    def restart(self) -> str: ...

    def halt(self, wait: float = 0.0) -> None: ...


class KeptServer:
    """A server to keep, its name for people and the address its clients use (its restart must give it)."""

    def __init__(self, name: str, server: Restartable, address: str) -> None:
        self.name = name
        self.server = server
        self.address = address
        self.retry_at: float | None = None
        """When a server found ended is next started (None: running)."""
        self.backoff = 0.5


async def keep_servers(kept: Sequence[KeptServer], stop: asyncio.Event, interval: float = KEEP_INTERVAL) -> None:
    """Restarts each server of ``kept`` that ended, until ``stop`` is set. A restart that gives another
    address (the clients could not follow) sets ``stop``: ``berth up`` then ends, saying why."""
    while not stop.is_set():
        for entry in kept:
            await _look_after(entry, stop)
        await first_of(stop, timeout=interval)


async def _look_after(entry: KeptServer, stop: asyncio.Event) -> None:
    if entry.retry_at is None:
        code = entry.server.exited()
        if code is None:
            return
        log.error("embedded %s (pid %s) ended with exit status %s; starting it again", entry.name, entry.server.pid, code)
        entry.retry_at = time.monotonic()
    if time.monotonic() < entry.retry_at or stop.is_set():
        return
    try:
        address = await asyncio.to_thread(entry.server.restart)
    except Exception as exc:  # noqa: BLE001 - e.g. the old server's shared memory still held: tried again
        log.error("embedded %s could not be started again (%s); trying again in %.1f s", entry.name, exc, entry.backoff)
        entry.retry_at = time.monotonic() + entry.backoff
        entry.backoff = min(entry.backoff * 2, MAX_BACKOFF)
        return
    entry.retry_at, entry.backoff = None, 0.5
    if address != entry.address:
        log.error("embedded %s started again at %s, not at %s where the services reach it: stopping Berth",
                  entry.name, address, entry.address)
        stop.set()
        return
    log.warning("embedded %s started again (pid %s) at %s", entry.name, entry.server.pid, address)
