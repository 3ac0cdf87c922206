"""After a fault: does the EVENTS stream hold every stored event exactly once, and do the read models
equal a fresh rebuild?

* The event store (``berth_events``) numbers its events (``notification_id``); the relay publishes
  each one with that number in the ``Berth-Position`` header. Every message of EVENTS is read
  (``get_msg``, as ``services.common.event_stream.read_cursor`` does): a position seen twice is a
  duplicate, a stored position never seen is lost.
* Read models: dumped (``projections.rebuild.dump_read_models``), rebuilt with
  ``berth projections rebuild`` by the caller, dumped again; ``drift`` counts the tables that differ.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from nats.js.errors import NotFoundError

from contracts.subjects import EVENTS_STREAM, HEADER_POSITION
from services.common.bus import connect

__all__ = ["Ledger", "read_ledger", "table_drift"]


@dataclass
class Ledger:
    stored: int  # events in the store
    published: int  # messages in EVENTS with a Berth-Position
    lost: int  # stored, never published
    duplicated: int  # positions published more than once

    @property
    def clean(self) -> bool:
        return self.stored == self.published and self.lost == 0 and self.duplicated == 0


async def read_ledger(nats_url: str, creds: str | Path | None, pg_dsn: str) -> Ledger:
    """Compares the event store of ``pg_dsn`` with the EVENTS stream of ``nats_url``."""
    with psycopg.connect(pg_dsn) as conn:
        stored = {row[0] for row in conn.execute("SELECT notification_id FROM berth_events")}
    nc = await connect(nats_url, "berth-faults", str(creds or ""))
    try:
        js = nc.jetstream()
        info = await js.stream_info(EVENTS_STREAM)
        seen: Counter[int] = Counter()
        for seq in range(max(info.state.first_seq, 1), info.state.last_seq + 1):
            try:
                msg = await js.get_msg(EVENTS_STREAM, seq=seq)
            except NotFoundError:
                continue
            position = (msg.headers or {}).get(HEADER_POSITION)
            if position is not None:
                seen[int(position)] += 1
    finally:
        await nc.close()
    return Ledger(stored=len(stored), published=sum(seen.values()), lost=len(stored - set(seen)),
                  duplicated=sum(count - 1 for count in seen.values() if count > 1))


def table_drift(before: dict[str, list[Any]], after: dict[str, list[Any]]) -> list[str]:
    """Returns the read-model tables whose rows differ between two dumps."""
    return sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
