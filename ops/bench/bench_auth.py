"""Benchmark of a signed request's authentication (``services.gateway.auth.verify``) on real PostgreSQL:
with the keypair cache warm (one statement: the replay ledger's insert, which returns the keypair epoch)
against the same requests with the cache emptied before each (the keypair read as well: two statements,
as every request cost before the cache), interleaved in blocks in one run.

Works in a scratch database created through --pg-admin-dsn (default $BERTH_PG_DSN, else
postgresql://postgres@127.0.0.1:5432/postgres), dropped at the end. Nothing here is a pass/fail test.

Usage: .venv/bin/python ops/bench/bench_auth.py [--requests 2000] [--block 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from psycopg_pool import AsyncConnectionPool  # noqa: E402

from ops.bench.soak import DEFAULT_ADMIN_DSN, scratch_database  # noqa: E402
from services.common.pg_limits import limited_dsn  # noqa: E402
from services.gateway.auth.keypairs import KEYPAIRS_DDL, ensure_admin_keypair  # noqa: E402
from services.gateway.auth.keypair_cache import KeypairCache  # noqa: E402
from services.gateway.auth.replay import SEEN_SIGNATURES_DDL  # noqa: E402
from services.gateway.auth.verify import Authenticator  # noqa: E402
from services.sdk.signing import sign_request  # noqa: E402

HOST = "bench.test"


async def _timed(auth: Authenticator, keypair: tuple[str, str]) -> float:
    headers = {k.lower(): v for k, v in sign_request(access_key=keypair[0], secret_key=keypair[1], method="POST",
                                                     path="/graphql", host=HOST, body=b"{}").items()}
    headers["host"] = HOST
    started = time.perf_counter()
    await auth.authenticate(method="POST", path="/graphql", headers=headers, body=b"{}")
    return time.perf_counter() - started


async def run(dsn: str, requests: int, block: int) -> dict[str, list[float]]:
    keypair = ensure_admin_keypair(dsn)
    assert keypair is not None
    pool = AsyncConnectionPool(limited_dsn(dsn), min_size=1, max_size=1, open=False, kwargs={"autocommit": True})
    await pool.open(wait=True)
    try:
        async with pool.connection() as conn:
            await conn.execute(KEYPAIRS_DDL)
            await conn.execute(SEEN_SIGNATURES_DDL)
        auths = {"warm": Authenticator(pool), "cold": Authenticator(pool, keypairs=KeypairCache(size=0))}
        times: dict[str, list[float]] = {"warm": [], "cold": []}
        for _ in range(max(requests // (2 * block), 1)):
            for kind in ("cold", "warm"):
                times[kind] += [await _timed(auths[kind], keypair) for _ in range(block)]
        return times
    finally:
        await pool.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="signed requests in all (default 2000)")
    parser.add_argument("--block", type=int, default=100, help="requests per block of one kind (default 100)")
    parser.add_argument("--pg-admin-dsn", default=os.environ.get("BERTH_PG_DSN") or DEFAULT_ADMIN_DSN)
    args = parser.parse_args()
    with scratch_database(args.pg_admin_dsn) as dsn:
        times = asyncio.run(run(dsn, args.requests, args.block))
    print("| path | requests | median ms | p99 ms | requests/s (one connection) |")
    print("|---|---|---|---|---|")
    for kind, label in (("cold", "keypair read too (as before the cache)"), ("warm", "cache warm (ledger insert only)")):
        values = sorted(times[kind])
        p99 = values[min(int(0.99 * len(values)), len(values) - 1)]
        print(f"| {label} | {len(values)} | {statistics.median(values) * 1e3:.3f} | {p99 * 1e3:.3f} |"
              f" {len(values) / sum(values):,.0f} |")
    print(f"\nwarm ÷ cold median time: {statistics.median(times['warm']) / statistics.median(times['cold']):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
