"""What a projector runs on: NATS (with the streams), the applier (the read models' connection) and the
event store's backfill, opened and closed together; and the backoff of its retries."""

from __future__ import annotations

import asyncio
import logging

from nats.aio.client import Client
from nats.js import JetStreamContext

from services.common.bus import connect, ensure_streams
from services.common.settings import Settings
from services.common.waiting import first_of
from services.projector.applier import BatchApplier
from services.projector.backfill import StoreBackfill

__all__ = ["RETRY_DELAYS", "Runtime", "wait_or_stop"]

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)
"""Seconds between a projector's tries after a failure (the last repeats)."""


async def wait_or_stop(stop: asyncio.Event, delay: float) -> None:
    """Returns after ``delay`` seconds, or as soon as ``stop`` is set."""
    await first_of(stop, timeout=delay)


class Runtime:
    """Opens and closes what a projector needs: NATS (with the streams) and the applier."""

    def __init__(self, settings: Settings) -> None:
        if not settings.nats_url or not settings.pg_dsn:
            raise ValueError("the projector needs BERTH_NATS_URL and BERTH_PG_DSN")
        self._settings = settings
        self.applier = BatchApplier(settings.pg_dsn)
        self.backfill = StoreBackfill(settings.pg_dsn)
        self._nc: Client | None = None

    @property
    def js(self) -> JetStreamContext:
        assert self._nc is not None
        return self._nc.jetstream()

    async def open(self, stop: asyncio.Event | None = None) -> bool:
        """Connects to NATS and ensures the streams; with ``stop``, retries until it works
        (returns False when stopped first), else raises on the first failure."""
        failures = 0
        while True:
            try:
                self._nc = self._nc or await connect(self._settings.nats_url, "berth-projector", self._settings.nats_creds or None)
                await ensure_streams(self._nc.jetstream())
                return True
            except Exception as exc:
                if stop is None:
                    raise
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                log.warning("cannot reach NATS (%s: %s); retrying in %.2f s", type(exc).__name__, exc, delay)
                await wait_or_stop(stop, delay)
                if stop.is_set():
                    return False

    async def close(self) -> None:
        """Closes NATS and the database connection."""
        if self._nc is not None:
            await self._nc.close()
        await self.applier.close()
        await self.backfill.close()
