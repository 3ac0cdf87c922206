"""Signed-request replay: a signature is accepted once within the date window.

Each accepted signature is remembered in PostgreSQL (``auth_seen_signatures``: the access key
and the signature as the key, and when the date window of the request closes) until the window
closes; after that the date check refuses the request anyway. A table, not process memory,
because several gateway processes may serve one database (and a restart must not forget): the
unique key makes "first to insert wins" hold across all of them (see ``_RECORD`` for its cost). The table holds at most what the
keypairs may sign in one window (rate limit x keypairs); rows past their expiry are purged at
most once per ``PURGE_EVERY``.
"""

from __future__ import annotations

import datetime as dt
import time

from typing import NamedTuple

from psycopg import AsyncConnection

from services.gateway.auth.keypair_cache import EPOCH
from services.gateway.auth.limits_epoch import LIMITS_EPOCH

__all__ = ["PURGE_EVERY", "SEEN_SIGNATURES_DDL", "Recorded", "SignatureLedger"]

PURGE_EVERY = 60.0
"""Seconds between two purges of expired signatures by one gateway process."""

SEEN_SIGNATURES_DDL = """
CREATE TABLE IF NOT EXISTS auth_seen_signatures (
    access_key  text NOT NULL,
    signature   text NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (access_key, signature)
);
CREATE INDEX IF NOT EXISTS auth_seen_signatures_expires ON auth_seen_signatures (expires_at)
"""


_RECORD = (
    "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)),"
    " recorded AS (INSERT INTO auth_seen_signatures (access_key, signature, expires_at)"
    " SELECT %s, %s, %s FROM relaxed ON CONFLICT DO NOTHING RETURNING 1)"
    f" SELECT EXISTS (SELECT 1 FROM recorded), {EPOCH}, {LIMITS_EPOCH}"
)
"""One statement, one round trip, its own transaction (autocommit) that does not wait for the WAL flush
(``synchronous_commit`` off for it alone): 0.12 ms instead of 1.3 ms per signed request here. The price:
a PostgreSQL crash forgets the signatures of its last ~0.6 s (three ``wal_writer_delay``), so a request
captured in that instant could be replayed once after the crash. The same statement (one snapshot)
returns the keypair epoch, against which the gateway checks its cached keypair
(``services.gateway.auth.keypair_cache``), and the limits epoch, against which it checks the keypair's
cached policy limits (``services.gateway.auth.limits_epoch``): no round trip of their own."""


class Recorded(NamedTuple):
    """What recording a signature found: whether it was its first use, and the keypair and limits
    epochs then."""

    first_use: bool
    epoch: int
    limits_epoch: int


class SignatureLedger:
    """Records accepted signatures; ``record`` tells whether a signature is seen for the first time."""

    def __init__(self, *, purge_every: float = PURGE_EVERY) -> None:
        self._purge_every = purge_every
        self._last_purge = float("-inf")

    async def record(self, conn: AsyncConnection, access_key: str, signature: str, expires_at: dt.datetime) -> Recorded:
        """Records ``signature`` of ``access_key`` until ``expires_at``; returns whether this is its first
        use (False: a replay) and the keypair and limits epochs as of the insert."""
        now = time.monotonic()
        if now - self._last_purge >= self._purge_every:
            self._last_purge = now
            await conn.execute("DELETE FROM auth_seen_signatures WHERE expires_at < now()")
        cur = await conn.execute(_RECORD, (access_key, signature, expires_at))
        row = await cur.fetchone()
        assert row is not None  # the outer SELECT yields one row
        return Recorded(first_use=row[0], epoch=row[1], limits_epoch=row[2])
