"""Benchmark of scheduling end to end: a burst of session requests to RUNNING on many agents.

Runs NATS, PostgreSQL and every control-plane service together on this machine (relay,
projector, scheduler and controller as separate processes, as in production) and a
*simulated fleet* of agents in this process: it registers N agents (``agent_started``
reports, as real agents send) and answers each ``KernelAssigned`` event with one
``kernel_running`` report, so the agents cost next to nothing and the control plane is
what is measured. Heartbeats are not sent; the controller runs with a heartbeat timeout
longer than the run instead.

The burst: S session requests (1 kernel, cpu=1 mem=1g) recorded in the event store in
transactions of 100, as fast as the store takes them. Measured, in one run:
  - placements/s: S / (last SessionScheduled recorded - first request recorded);
  - Requested -> RUNNING/s: S / (last session RUNNING in the read model - first request);
  - the write rate of the burst itself (the ceiling on what can be placed per second).

Usage: .venv/bin/python ops/bench/bench_scheduling.py [--agents 1000] [--sessions 20000]
It creates a scratch database ``berth_bench_<hex>`` through --pg-admin-dsn (default
$BERTH_PG_DSN, else postgresql://postgres@127.0.0.1:5432/postgres) and drops it at the end;
it starts its own nats-server.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

import nats
import psycopg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from contracts import commands as c  # noqa: E402
from contracts.catalog import decode_event  # noqa: E402
from contracts.reports import AgentStarted, KernelRunningReport, encode_report  # noqa: E402
from contracts.session import KernelSpec, SessionSpec  # noqa: E402
from contracts.subjects import EVENTS_STREAM, report_subject  # noqa: E402
from domain import session as session_domain  # noqa: E402
from services.common.bus import CREDENTIALS_ENV, connect_options, ensure_streams  # noqa: E402
from services.common.bus_identities import ADMIN  # noqa: E402
from services.application.context import make_context  # noqa: E402
from services.supervisor.embedded import NatsServer  # noqa: E402
from services.supervisor.embedded_postgres import create_database, drop_database  # noqa: E402
from services.application.sessions import Sessions  # noqa: E402
from processes import service_processes  # noqa: E402  (ops/bench, the script's folder)

DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
WRITE_BATCH = 100
SERVICES = ("services.relay", "services.projector", "services.scheduler", "services.controller")


async def register_fleet(js: JetStreamContext, agents: int, cpu: int, mem_gib: int) -> None:
    now = dt.datetime.now(dt.UTC)
    for i in range(agents):
        agent_id = f"sim-{i:04d}"
        report = AgentStarted(agent_id=agent_id, observed_at=now, capacity={"cpu": Decimal(cpu), "mem": Decimal(mem_gib * 1024**3)},
                              backend="simulated", hostname="bench")
        await js.publish_async(report_subject(agent_id, report.type_name()), encode_report(report),
                               headers={"Nats-Msg-Id": f"{agent_id}:started"})
    await js.publish_async_completed()


async def run_fleet(js: JetStreamContext, stop: asyncio.Event) -> None:
    """Answers every kernel assignment with a ``kernel_running`` report."""
    config = ConsumerConfig(durable_name="bench-fleet", filter_subject="ev.agent.*.kernel_assigned",
                            ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL)
    sub = await js.pull_subscribe("ev.agent.*.kernel_assigned", durable="bench-fleet", stream=EVENTS_STREAM, config=config)
    while not stop.is_set():
        try:
            messages = await sub.fetch(500, timeout=0.2)
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            continue
        now = dt.datetime.now(dt.UTC)
        for msg in messages:
            event = decode_event(msg.data)
            agent_id = event.originator_id
            report = KernelRunningReport(agent_id=agent_id, observed_at=now, kernel_id=event.kernel_id,  # type: ignore[attr-defined]
                                         session_id=event.session_id, container_id=f"sim-{event.kernel_id}")  # type: ignore[attr-defined]
            await js.publish_async(report_subject(agent_id, report.type_name()), encode_report(report),
                                   headers={"Nats-Msg-Id": f"{agent_id}:{event.kernel_id}:running"})  # type: ignore[attr-defined]
        await js.publish_async_completed()


def burst(app: Sessions, sessions: int) -> float:
    """Records the session requests in transactions of WRITE_BATCH; returns the seconds it took."""
    start = time.monotonic()
    batch: list = []
    for i in range(sessions):
        sid = f"b{i:06d}"
        command = c.RequestSession(owner="AKBENCH", spec=SessionSpec(
            name=f"bench-{i}", image="python:3.11",
            kernels=[KernelSpec(kernel_id=f"{sid}-k0", slots={"cpu": "1", "mem": "1g"})]))
        batch += session_domain.decide(None, command, make_context("AKBENCH"), sid)
        if len(batch) >= WRITE_BATCH:
            app.record(batch)
            batch = []
    if batch:
        app.record(batch)
    return time.monotonic() - start


def scalar(conn: psycopg.Connection, query: str) -> object:
    return conn.execute(query).fetchone()[0]  # type: ignore[index]


async def wait_until(predicate, timeout: float, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached")
        await asyncio.sleep(interval)


async def main_async(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    admin_dsn = args.pg_admin_dsn or os.environ.get("BERTH_PG_DSN") or DEFAULT_ADMIN_DSN
    db_name = f"berth_bench_{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="berth-bench-"))
    server = NatsServer()
    nats_url = server.start(tmp / "nats")
    os.environ[CREDENTIALS_ENV] = str(server.credentials(ADMIN))  # every connection of the benchmark
    dsn = create_database(admin_dsn, db_name)
    app = Sessions(dsn)
    nc = await nats.connect(**connect_options(nats_url, "bench"))
    js = nc.jetstream()
    stop = asyncio.Event()
    per_agent = -(-args.sessions // args.agents) + 2
    print(f"Berth scheduling benchmark: {args.agents} simulated agents (cpu={per_agent}), burst of {args.sessions} sessions,"
          f" {os.cpu_count()} CPUs; logs in {tmp}")
    try:
        await ensure_streams(js)
        with service_processes(SERVICES, nats_url, dsn, tmp, BERTH_HEARTBEAT_TIMEOUT="3600", BERTH_HEARTBEAT_INTERVAL="5"), \
                psycopg.connect(dsn, autocommit=True) as conn:
            await register_fleet(js, args.agents, per_agent, per_agent * 2)
            await wait_until(lambda: _count(conn, "SELECT count(*) FROM agents") >= args.agents, 120)
            fleet = asyncio.create_task(run_fleet(js, stop))
            first = dt.datetime.now(dt.UTC)
            write_s = await asyncio.to_thread(burst, app, args.sessions)
            await wait_until(lambda: _count(conn, "SELECT count(*) FROM sessions WHERE status = 'RUNNING'") >= args.sessions,
                             args.timeout, 0.2)
            running_at = dt.datetime.now(dt.UTC)
            stop.set()
            await fleet
            last_scheduled = scalar(conn, "SELECT max(occurred_at) FROM event_log WHERE type = 'session.scheduled'")
            last_running = scalar(conn, "SELECT max((status_history->>'RUNNING')::timestamptz) FROM sessions")
            events = _count(conn, "SELECT count(*) FROM event_log")
        place_s = (last_scheduled - first).total_seconds()  # type: ignore[operator]
        run_s = (last_running - first).total_seconds()  # type: ignore[operator]
        print(f"\n  burst written in {write_s:.2f} s ({args.sessions / write_s:.0f} requests/s)")
        print(f"  placements:             {args.sessions / place_s:8.0f} sessions/s  (last scheduled after {place_s:.2f} s)")
        print(f"  Requested -> RUNNING:   {args.sessions / run_s:8.0f} sessions/s  (last RUNNING after {run_s:.2f} s;"
              f" seen in the read model after {(running_at - first).total_seconds():.2f} s)")
        print(f"  events recorded: {events} ({events / args.sessions:.1f} per session); "
              f"placement rate / request write rate = {(args.sessions / place_s) / (args.sessions / write_s):.2f}")
    finally:
        stop.set()
        await nc.close()
        app.close()
        drop_database(admin_dsn, db_name)
        server.stop()


def _count(conn: psycopg.Connection, query: str) -> int:
    try:
        return int(scalar(conn, query))  # type: ignore[arg-type]
    except psycopg.errors.UndefinedTable:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=20000)
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for every session to run")
    parser.add_argument("--pg-admin-dsn", default=None)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
