"""Benchmark of the event store's save path: Berth's one-statement recorder against the
``eventsourcing`` library's default (pipeline mode), measured in one run on the same server.

For each path, in its own scratch database: N single-event saves (one transaction each, as an
API command writes) and N events in saves of 100 (as a scheduling pass or a report batch
writes), then one large save of --large-mb MB run on Berth's path only (the library's path
hangs on it for good: see services/common/pg_recorder.py). Prints events/s and the ratio
Berth / library. Nothing here is a pass/fail test.

Usage: .venv/bin/python ops/bench/bench_store.py [--events N] [--large-mb MB] [--pg-admin-dsn DSN]
The scratch databases ``berth_bench_store_<hex>`` are created through --pg-admin-dsn (default
$BERTH_PG_DSN, else postgresql://postgres@127.0.0.1:5432/postgres) and dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

from eventsourcing.persistence import StoredEvent

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from services.common import store  # noqa: E402
from services.supervisor.embedded_postgres import create_database, drop_database  # noqa: E402

LIBRARY = "eventsourcing.postgres"
BERTH = "services.common.pg_recorder:BerthPostgresFactory"
PAYLOAD = 600
"""Bytes of one event's state: about a session.requested event."""


def _app(dsn: str, module: str) -> store.BerthApplication:
    """Returns an application on ``dsn`` whose recorder comes from ``module``."""
    env = {**store.eventsourcing_env(dsn), "PERSISTENCE_MODULE": module}
    app = store.BerthApplication.__new__(store.BerthApplication)
    store.Application.__init__(app, env=env)
    return app


def _events(prefix: str, count: int, size: int = PAYLOAD) -> list[StoredEvent]:
    return [StoredEvent(originator_id=f"{prefix}-{i}", originator_version=1, topic="bench", state=b"x" * size)
            for i in range(count)]


def _rate(save: Callable[[list[StoredEvent]], object], count: int, batch: int) -> float:
    started = time.perf_counter()
    for n in range(count // batch):
        save(_events(f"b{batch}-{n}", batch))
    return count / (time.perf_counter() - started)


def measure(admin_dsn: str, module: str, count: int) -> tuple[float, float, store.BerthApplication, str]:
    name = f"berth_bench_store_{uuid.uuid4().hex[:8]}"
    app = _app(create_database(admin_dsn, name), module)
    single = _rate(app.recorder.insert_events, max(count // 10, 100), 1)
    batched = _rate(app.recorder.insert_events, count, 100)
    return single, batched, app, name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000, help="events saved in batches of 100 (a tenth as single saves)")
    parser.add_argument("--large-mb", type=float, default=10.0, help="size of the one large save (Berth's path only)")
    parser.add_argument("--pg-admin-dsn", default=os.environ.get("BERTH_PG_DSN") or "postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    results = {}
    for label, module in (("library (pipeline)", LIBRARY), ("berth (one statement)", BERTH)):
        single, batched, app, name = measure(args.pg_admin_dsn, module, args.events)
        results[label] = (single, batched)
        if module == BERTH:
            count = int(args.large_mb * 1024 * 1024 / 1000)
            started = time.perf_counter()
            app.recorder.insert_events(_events("large", count, 1000))
            print(f"one save of {count} events ({args.large_mb:g} MB) on berth's path: {time.perf_counter() - started:.2f} s")
        app.close()
        drop_database(args.pg_admin_dsn, name)
    print(f"{'path':<24}{'single saves/s':>16}{'events/s in 100s':>18}")
    for label, (single, batched) in results.items():
        print(f"{label:<24}{single:>16.0f}{batched:>18.0f}")
    (lib_single, lib_batched), (b_single, b_batched) = results.values()
    print(f"{'ratio berth/library':<24}{b_single / lib_single:>15.2f}x{b_batched / lib_batched:>17.2f}x")


if __name__ == "__main__":
    main()
