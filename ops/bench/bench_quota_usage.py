"""Benchmark of the quota read model as a scope fills: the projector's cost per quota event while one
domain holds 0, 1,000 and 5,000 sessions.

Applies ``quota.consumed`` and ``quota.released`` events (one session each) through the projector's
runner (``projections.runner.apply_batch``), in batches of 1 (a quiet platform: every event its own
batch) and of 20 (under load), on a scratch database created through --pg-admin-dsn (default
$BERTH_PG_DSN, else postgresql://postgres@127.0.0.1:5432/postgres). Prints milliseconds per event,
wall clock and this process's CPU, and each figure divided by the empty scope's: a cost that grows
with what the scope holds shows as a ratio well above 1. Nothing here is a pass/fail test.

Usage: .venv/bin/python ops/bench/bench_quota_usage.py [--events 200] [--held 0,1000,5000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from contracts.catalog import encode_event  # noqa: E402
from contracts.envelope import Event, Metadata  # noqa: E402
from contracts.quota import QuotaConsumed, QuotaReleased, QuotaScope, quota_id  # noqa: E402
from contracts.subjects import event_subject  # noqa: E402
from ops.bench.soak import DEFAULT_ADMIN_DSN, scratch_database  # noqa: E402
from projections.delivery import Delivery, Rejected  # noqa: E402
from projections.runner import apply_batch  # noqa: E402
from projections.schema import create_schema  # noqa: E402

QID = quota_id(QuotaScope.DOMAIN, "bench")
SLOTS = {"cpu": Decimal(1), "mem": Decimal(1 << 30)}
META = Metadata(actor="bench", correlation_id="bench", causation_id="bench")


class Feed:
    """Numbers the quota events of one scope and applies them as the projector does."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn, self.version = conn, 0

    def _event(self, cls: type[Event], **fields: object) -> Delivery:
        self.version += 1
        event = cls(event_id=uuid.uuid4(), originator_id=QID, originator_version=self.version,
                    timestamp=dt.datetime.now(dt.UTC), metadata=META, scope=QuotaScope.DOMAIN, name="bench", **fields)
        return Delivery(self.version, event_subject(cls.type_name(), QID), str(self.version), encode_event(event))

    def consume(self, session_ids: list[str]) -> None:
        self._apply([self._event(QuotaConsumed, allocations={s: SLOTS}) for s in session_ids])

    def release(self, session_ids: list[str]) -> None:
        self._apply([self._event(QuotaReleased, session_id=s, slots=SLOTS) for s in session_ids])

    def _apply(self, deliveries: list[Delivery]) -> None:
        apply_batch(self.conn, deliveries, on_reject=_refused)


def _refused(rejected: Rejected) -> None:
    raise SystemExit(f"the projector refused an event of the benchmark: {rejected}")


def measure(feed: Feed, tag: str, events: int, batch: int) -> tuple[float, float]:
    """Returns ms per event (wall, CPU) of ``events`` consumptions then their releases, in batches."""
    ids = [f"{tag}-{i}" for i in range(events)]
    wall, cpu = time.perf_counter(), time.process_time()
    for apply in (feed.consume, feed.release):
        for start in range(0, events, batch):
            apply(ids[start:start + batch])
    count = 2 * events
    return (time.perf_counter() - wall) / count * 1000, (time.process_time() - cpu) / count * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200, help="consumptions (and as many releases) per figure")
    parser.add_argument("--held", default="0,1000,5000", help="sessions the scope holds, one figure each")
    parser.add_argument("--pg-admin-dsn", default=os.environ.get("BERTH_PG_DSN") or DEFAULT_ADMIN_DSN)
    args = parser.parse_args()
    sizes = sorted(int(n) for n in args.held.split(","))
    rows = []
    with scratch_database(args.pg_admin_dsn) as dsn, psycopg.connect(dsn, autocommit=True) as conn:
        create_schema(conn)
        feed, held = Feed(conn), 0
        for size in sizes:
            while held < size:
                step = min(500, size - held)
                feed.consume([f"held-{held + i}" for i in range(step)])
                held += step
            for batch in (1, 20):
                rows.append((size, batch, *measure(feed, f"{size}-{batch}", args.events, batch)))
    print("| sessions held | batch | ms/event (wall) | ÷ empty | ms/event (CPU, projector side) | ÷ empty |")
    print("|---|---|---|---|---|---|")
    first = {batch: (wall, cpu) for size, batch, wall, cpu in rows if size == sizes[0]}
    for size, batch, wall, cpu in rows:
        print(f"| {size:,} | {batch} | {wall:.3f} | {wall / first[batch][0]:.2f} | {cpu:.3f} | {cpu / first[batch][1]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
