"""Raw PostgreSQL baselines for the benchmarks, measured in a scratch table ``bench_raw`` of the
benchmark's own database: single-row transactions/s and batched rows/s."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import psycopg

__all__ = ["batched_rate", "measure_baselines", "scratch_table", "single_row_rate"]


@contextlib.contextmanager
def scratch_table(dsn: str) -> Iterator[None]:
    """Creates ``bench_raw`` for the baselines and drops it after."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_raw (id bigserial PRIMARY KEY, payload text NOT NULL)")
    try:
        yield
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE bench_raw")


def single_row_rate(dsn: str, connections: int, per_connection: int) -> float:
    """Single-row INSERT + COMMIT transactions per second from ``connections`` threads."""
    conns = [psycopg.connect(dsn, autocommit=True) for _ in range(connections)]
    barrier = threading.Barrier(connections + 1)

    def work(conn: psycopg.Connection) -> None:
        barrier.wait()
        for i in range(per_connection):
            conn.execute("INSERT INTO bench_raw (payload) VALUES (%s)", (f"row {i}",))

    threads = [threading.Thread(target=work, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    for c in conns:
        c.close()
    return connections * per_connection / elapsed


def batched_rate(dsn: str, rows: int, batch: int = 100) -> float:
    """Rows per second inserted ``batch`` per transaction (``executemany``) from one connection."""
    with psycopg.connect(dsn) as conn:
        started = time.perf_counter()
        for start in range(0, rows, batch):
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO bench_raw (payload) VALUES (%s)",
                                [(f"row {i}",) for i in range(start, min(start + batch, rows))])
            conn.commit()
        return rows / (time.perf_counter() - started)


def measure_baselines(dsn: str) -> dict[str, float]:
    """Returns bench_api's baselines: single-row tx/s from 1 and 16 connections, batched rows/s."""
    with scratch_table(dsn):
        return {
            "raw single-row tx/s, 1 connection": single_row_rate(dsn, 1, 1000),
            "raw single-row tx/s, 16 connections": single_row_rate(dsn, 16, 200),
            "raw batched rows/s (100 per tx)": batched_rate(dsn, 20_000),
        }
