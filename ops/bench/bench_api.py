"""Benchmark through the public API: signed ``createSession`` as clients call it, against raw PostgreSQL.

Runs ``berth up --backend simulated --agents N --agent-capacity cpu=1000,mem=1000g`` as a subprocess
(its own nats-server, a temporary data dir) on a scratch database created through --pg-admin-dsn
(default $BERTH_PG_DSN, else postgresql://postgres@127.0.0.1:5432/postgres), as ``soak.py`` does.

Baselines, on the same PostgreSQL server and in the same run (a scratch table of the scratch database):
  - raw single-row transactions/s: one ``INSERT`` + ``COMMIT`` at a time, from 1 and from 16 connections;
  - raw batched rows/s: ``INSERT`` of 100 rows per transaction from one connection.
First (--floor N, default 2000), 16 clients send N signed ``query { __typename }``: a request with no
resolver, so its rate is the API's own ceiling on this machine (HTTP, the signature check with its
replay-ledger insert, GraphQL), which bounds every operation's.
Phases, each: C clients send S signed ``createSession`` (latency of every call: p50, p99, requests/s),
then wait until the read models show all S RUNNING (Requested -> RUNNING/s: S / (last RUNNING in
``statusHistory`` - first request sent)), then ``terminateSession`` all S and wait until all are
TERMINATED (terminations/s the same way):
  - one phase per client count of --clients (default 1, 16, 64);
  - then --rounds (default 5) more phases at 16 clients on the same instance, to show aging: each
    figure of the last round divided by the first's (>= 0.9 means no aging), next to the share of
    CPU time the hypervisor took during each round (``cpu_steal.py``), so that a machine that was
    slowed down meanwhile is not read as aging.
Prints one table and the ratios to the baselines, then the CPU milliseconds each process spent per session
in each phase (``cpu_split.py``: berth up's services, its nats-server, the PostgreSQL backends of its
database, and this script's clients). Nothing here is a pass/fail test.

Usage: .venv/bin/python ops/bench/bench_api.py [--sessions 400] [--clients 1,16,64] [--rounds 5] [--agents 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from psycopg.conninfo import conninfo_to_dict  # noqa: E402

from ops.bench.cpu_split import CpuSampler, per_item  # noqa: E402
from ops.bench.cpu_steal import StealMeter  # noqa: E402
from ops.bench.pg_baselines import measure_baselines  # noqa: E402
from ops.bench.soak import DEFAULT_ADMIN_DSN, BerthUp, scratch_database  # noqa: E402
from ops.bench.session_listing import last_cursor, list_sessions  # noqa: E402
from ops.bench.soak_driver import Endpoint  # noqa: E402
from services.cli import queries as q  # noqa: E402
from services.sdk.client import CREATE_SESSION, BerthClient  # noqa: E402

ENDED = ("TERMINATED", "CANCELLED", "ERROR")
POLL = 1.0
"""Seconds between two reads of every session while waiting (the rates come from ``statusHistory``, not
from when a read saw them, so a slower poll only spares the system under test the observer's load)."""


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- phases through the API ------------------------------------------------------------------------


@dataclass
class Phase:
    label: str
    clients: int
    sessions: int
    latencies: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    create_seconds: float = 0.0
    running_rate: float | None = None
    terminate_rate: float | None = None
    cpu_ms: dict[str, float] = field(default_factory=dict)
    """CPU milliseconds per session (request, RUNNING, terminated) of each process, see ``cpu_split``."""
    steal: float | None = None
    """The share of CPU time the hypervisor took during the phase (``cpu_steal.StealMeter``)."""

    @property
    def create_rate(self) -> float:
        return len(self.ids) / self.create_seconds if self.create_seconds else 0.0

    def percentile(self, p: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(int(p * len(ordered)), len(ordered) - 1)]


async def _each(clients: list[BerthClient], count: int, call) -> None:  # noqa: ANN001 - a coroutine function
    items = iter(range(count))

    async def worker(client: BerthClient) -> None:
        for i in items:
            await call(client, i)

    await asyncio.gather(*(worker(c) for c in clients))


def _epoch(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def _wait_for(observer: BerthClient, ids: list[str], status: str, position: int, timeout: float,
                    after: str | None) -> float | None:
    """Waits until every session of ``ids`` (created after the cursor ``after``) reached ``status`` (or
    ended, for TERMINATED); returns the latest time any of them reached it (from its ``statusHistory``),
    None on timeout. Only the phase's sessions are read: reading the whole history at every poll made
    the gateway's and PostgreSQL's CPU per session grow round after round (the benchmark's own aging)."""
    wanted = set(ids)
    if not wanted:  # every request failed: nothing to wait for (the table counts the errors)
        return None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = [r for r in await list_sessions(observer, None, position, after) if r["id"] in wanted]
        history = [r["statusHistory"] or {} for r in rows]
        reached = [h[status] for h in history if status in h]
        if len(reached) == len(wanted):
            return max(_epoch(t) for t in reached)
        await asyncio.sleep(POLL)
    return None


async def _timed(phase: Phase, client: BerthClient, query: str, variables: dict) -> dict | None:
    """Sends one request; keeps its latency in ``phase``, or counts its error there (None)."""
    sent = time.perf_counter()
    try:
        data = await client.execute(query, variables)
    except Exception as exc:  # noqa: BLE001 - counted and shown
        phase.errors[f"{type(exc).__name__}: {str(exc)[:100]}"] += 1
        return None
    phase.latencies.append(time.perf_counter() - sent)
    return data


@contextlib.asynccontextmanager
async def _clients(endpoint: Endpoint, phase: Phase, cpu: CpuSampler | None) -> AsyncIterator[list[BerthClient]]:
    """``phase.clients`` clients, closed at the end; the CPU spent meanwhile per item of ``phase.ids`` goes
    to ``phase.cpu_ms``."""
    clients = [endpoint.client() for _ in range(phase.clients)]
    cpu_before = _with_bench(cpu.mark()) if cpu is not None else None
    try:
        yield clients
        if cpu is not None and cpu_before is not None:
            phase.cpu_ms = per_item(cpu_before, _with_bench(cpu.mark()), len(phase.ids))
    finally:
        for client in clients:
            await client.aclose()


async def run_phase(endpoint: Endpoint, observer: BerthClient, phase: Phase, timeout: float,
                    cpu: CpuSampler | None = None) -> Phase:
    position = 0
    start = await last_cursor(observer)
    steal = StealMeter()
    async with _clients(endpoint, phase, cpu) as clients:
        async def create(client: BerthClient, i: int) -> None:
            nonlocal position
            data = await _timed(phase, client, CREATE_SESSION, {"input": {"name": f"{phase.label}-{i}"}})
            if data is not None:
                phase.ids.append(data["createSession"]["sessionId"])
                position = max(position, int(data["createSession"]["position"] or 0))

        first_sent = time.time()
        started = time.perf_counter()
        await _each(clients, phase.sessions, create)
        phase.create_seconds = time.perf_counter() - started
        last_running = await _wait_for(observer, phase.ids, "RUNNING", position, timeout, start)
        if last_running is not None:
            phase.running_rate = len(phase.ids) / max(last_running - first_sent, 1e-6)

        ids = iter(phase.ids)

        async def terminate(client: BerthClient, _: int) -> None:
            nonlocal position
            session_id = next(ids)
            try:
                data = await client.execute(q.TERMINATE_SESSION, {"id": session_id})
            except Exception as exc:  # noqa: BLE001 - counted and shown (it ended the whole run before)
                phase.errors[f"terminateSession: {type(exc).__name__}: {str(exc)[:100]}"] += 1
                return
            position = max(position, int(data["terminateSession"]["position"] or 0))

        first_terminate = time.time()
        await _each(clients, len(phase.ids), terminate)
        last_ended = await _wait_for(observer, phase.ids, "TERMINATED", position, timeout, start)
        if last_ended is not None:
            phase.terminate_rate = len(phase.ids) / max(last_ended - first_terminate, 1e-6)
    phase.steal = steal.share()
    return phase


FLOOR_QUERY = "query { __typename }"
"""A signed request with no resolver: what every call pays before any work of its own (HTTP, the signature
check and its replay-ledger insert, the GraphQL execution)."""


async def run_floor(endpoint: Endpoint, phase: Phase, cpu: CpuSampler | None = None) -> Phase:
    """Sends ``FLOOR_QUERY`` ``phase.sessions`` times from ``phase.clients`` clients: the API's own ceiling on
    this machine, which bounds what any operation through it can reach."""
    async with _clients(endpoint, phase, cpu) as clients:
        async def call(client: BerthClient, i: int) -> None:
            if await _timed(phase, client, FLOOR_QUERY, {}) is not None:
                phase.ids.append(str(i))

        started = time.perf_counter()
        await _each(clients, phase.sessions, call)
        phase.create_seconds = time.perf_counter() - started
    return phase


def _with_bench(marks: Counter[str]) -> Counter[str]:
    """``marks`` plus this process's own CPU seconds (the clients and the observer), as ``bench``."""
    times = os.times()
    marks["bench (clients)"] = times.user + times.system
    return marks


def _ms(value: float | None) -> str:
    return f"{value * 1000:.0f}" if value is not None else "-"


def _rate(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


def table(phases: list[Phase], baselines: dict[str, float]) -> str:
    single = baselines["raw single-row tx/s, 1 connection"]
    lines = ["| phase | clients | sessions | createSession/s | p50 ms | p99 ms | ÷ raw tx/s (1 conn) "
             "| Requested→RUNNING/s | ÷ raw tx/s | terminated/s | errors |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in phases:
        running_ratio = f"{p.running_rate / single:.2f}" if p.running_rate else "-"
        lines.append(
            f"| {p.label} | {p.clients} | {len(p.ids)}/{p.sessions} | {p.create_rate:.1f} | {_ms(p.percentile(0.5))} "
            f"| {_ms(p.percentile(0.99))} | {p.create_rate / single:.2f} | {_rate(p.running_rate)} | {running_ratio} "
            f"| {_rate(p.terminate_rate)} | {sum(p.errors.values())} |")
    lines.append("")
    lines += [f"{name}: {value:,.0f}" for name, value in baselines.items()]
    names = list(dict.fromkeys(n for p in phases for n in p.cpu_ms))
    if names:
        lines += ["", "CPU ms per session (created, RUNNING, terminated; /proc of berth up's processes, its nats-server,"
                  " the PostgreSQL backends of its database, and this script):", "",
                  "| phase | total | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
        for p in phases:
            lines.append(f"| {p.label} | {sum(p.cpu_ms.values()):.1f} | "
                         + " | ".join(f"{p.cpu_ms.get(n, 0.0):.1f}" for n in names) + " |")
    aging = [p for p in phases if p.label.startswith("round")]
    if len(aging) >= 2:
        first, last = aging[0], aging[-1]

        def ratio(a: float | None, b: float | None, inverse: bool = False) -> str:
            if not a or not b:
                return "-"
            return f"{(a / b if inverse else b / a):.2f}"

        lines.append(
            f"aging ({last.label} ÷ {first.label}, >= 0.9 is no aging): createSession/s "
            f"{ratio(first.create_rate, last.create_rate)}, p99 {ratio(first.percentile(0.99), last.percentile(0.99), True)}"
            f" (first ÷ last), Requested→RUNNING/s {ratio(first.running_rate, last.running_rate)}, terminated/s "
            f"{ratio(first.terminate_rate, last.terminate_rate)}")
        lines.append(
            "CPU time taken by the hypervisor (steal) during each round (more in a later round: the machine was"
            " slowed down meanwhile; the clients' CPU ms per session above are the other witness): "
            + ", ".join(f"{p.steal:.0%}" for p in aging if p.steal is not None))
    return "\n".join(lines)


async def run(endpoint: Endpoint, client_counts: list[int], sessions: int, rounds: int, timeout: float,
              cpu: CpuSampler | None = None, floor: int = 0) -> list[Phase]:
    phases: list[Phase] = []
    if floor:
        say(f"bench_api: floor: 16 clients x {floor} signed {FLOOR_QUERY!r}")
        phases.append(await run_floor(endpoint, Phase("floor", 16, floor), cpu))
        say(f"bench_api: floor: {phases[-1].create_rate:.1f} requests/s, p99 {_ms(phases[-1].percentile(0.99))} ms")
    observer = endpoint.client()
    try:
        plan = [Phase(f"c{n}", n, sessions) for n in client_counts]
        plan += [Phase(f"round{i}", 16, sessions) for i in range(1, rounds + 1)]
        for phase in plan:
            say(f"bench_api: {phase.label}: {phase.clients} clients x {phase.sessions} sessions")
            phases.append(await run_phase(endpoint, observer, phase, timeout, cpu))
            p = phases[-1]
            say(f"bench_api: {p.label}: {p.create_rate:.1f} createSession/s, p99 {_ms(p.percentile(0.99))} ms, "
                f"RUNNING/s {_rate(p.running_rate)}, terminated/s {_rate(p.terminate_rate)}, steal {p.steal:.0%}")
            for error, count in p.errors.most_common(5):
                say(f"bench_api: {p.label}: {count} x {error}")
    finally:
        await observer.aclose()
    return phases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=400, help="sessions per phase (default 400)")
    parser.add_argument("--clients", default="1,16,64", help="client counts, one phase each (default 1,16,64)")
    parser.add_argument("--rounds", type=int, default=5, help="aging rounds at 16 clients (default 5)")
    parser.add_argument("--agents", type=int, default=10, help="simulated agents (default 10)")
    parser.add_argument("--timeout", type=float, default=300, help="deadline of each wait in seconds (default 300)")
    parser.add_argument("--floor", type=int, default=2000,
                        help=f"signed {FLOOR_QUERY!r} requests from 16 clients first, the API's own ceiling (0: none)")
    parser.add_argument("--pg-admin-dsn", default=os.environ.get("BERTH_PG_DSN") or DEFAULT_ADMIN_DSN)
    args = parser.parse_args()
    try:
        client_counts = [int(n) for n in args.clients.split(",") if n.strip()]
    except ValueError:
        parser.error("--clients takes comma-separated numbers, e.g. 1,16,64")
    if min([args.sessions, args.agents, *client_counts]) < 1 or args.rounds < 0 or args.floor < 0:
        parser.error("--sessions, --agents and every client count must be at least 1; --rounds and --floor at least 0")
    data_dir = Path(tempfile.mkdtemp(prefix="berth-bench-api-"))
    try:
        with scratch_database(args.pg_admin_dsn) as pg_dsn:
            say("bench_api: measuring the raw PostgreSQL baselines")
            baselines = measure_baselines(pg_dsn)
            berth = BerthUp(data_dir, pg_dsn, args.agents, None)
            try:
                instance = berth.start()
                endpoint = Endpoint(instance.gateway_url, instance.access_key, instance.secret_key)
                assert berth.proc is not None
                dbname = str(conninfo_to_dict(pg_dsn).get("dbname"))
                with CpuSampler(berth.proc.pid, data_dir, dbname) as cpu:
                    phases = asyncio.run(run(endpoint, client_counts, args.sessions, args.rounds, args.timeout, cpu,
                                             args.floor))
            finally:
                berth.stop()
        print(table(phases, baselines))
        return 0
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
