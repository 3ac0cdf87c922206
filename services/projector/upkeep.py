"""The projector's upkeep of its read models: every ``UPKEEP_EVERY`` seconds, on a connection of its own,
``projections.upkeep.tend`` vacuums and analyzes the tables whose dead or changed rows piled up, so that
no lookup of the projector (or of the readers) costs more as the platform ages, whatever PostgreSQL's
autovacuum does. A failure (PostgreSQL away) is tried again at the next turn; the projector's own
retries report the outage."""

from __future__ import annotations

import asyncio
import logging

import psycopg

from projections.upkeep import tend
from services.projector.connection import ThreadConnection
from services.projector.runtime import wait_or_stop

__all__ = ["STATEMENT_TIMEOUT", "UPKEEP_EVERY", "ReadModelUpkeep"]

log = logging.getLogger(__name__)

UPKEEP_EVERY = 2.0
"""Seconds between two looks at the read models' statistics (one query of ``pg_stat_user_tables``; a
table is vacuumed or analyzed only when due)."""
STATEMENT_TIMEOUT = "10min"
"""The upkeep connection's statement timeout, instead of the 20 s of every other session (``pg_limits``):
a ``VACUUM`` of a large table may take longer, and holds no lock that readers or writers wait for."""


class ReadModelUpkeep:
    """Tends the read models every ``every`` seconds until stopped (``run``)."""

    def __init__(self, dsn: str, every: float | None = None) -> None:
        """Prepares the upkeep of the read models at ``dsn``, every ``every`` seconds (``UPKEEP_EVERY`` by
        default); its connection opens on first use."""
        self._every = UPKEEP_EVERY if every is None else every
        self._conn = ThreadConnection(dsn, "projector-upkeep", prepare=_long_statements)

    async def run(self, stop: asyncio.Event) -> None:
        """Tends the read models every ``every`` seconds until ``stop`` is set; never raises (a failure
        is logged once, until a turn succeeds again)."""
        failing = False
        try:
            while not stop.is_set():
                await wait_or_stop(stop, self._every)
                if stop.is_set():
                    return
                try:
                    tended = await self._conn.call(tend)
                except Exception as exc:  # noqa: BLE001 - tried again at the next turn
                    if not failing:
                        log.warning("read-model upkeep failed (%s: %s); trying again every %.1f s",
                                    type(exc).__name__, exc, self._every)
                    failing = True
                    continue
                if failing:
                    log.info("read-model upkeep works again")
                failing = False
                if tended.vacuumed or tended.analyzed:
                    log.debug("vacuumed %s, analyzed %s", tended.vacuumed, tended.analyzed)
        finally:
            await self._conn.close()


def _long_statements(conn: psycopg.Connection) -> None:
    conn.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'")
