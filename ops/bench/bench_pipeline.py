"""Benchmark of Berth's event pipeline: event store -> relay -> EVENTS -> projector -> read models.

Measures, in one run and on the same machine:
  (a) the whole pipeline: N session.requested events recorded in batches of 100 (one
      transaction each, as the Sessions use case writes them), timed from the first write
      until the projector's position reaches the last one (command -> visible in read model);
  (w) the event store writes during (a) (100 events per transaction): the ceiling for (a);
  (b) the relay alone: N pre-recorded events published to EVENTS (timed from its first
      message in the stream, so its start-up is not counted);
  (c) a raw nats-py ``publish_async`` loop of N messages of the same size into a scratch
      stream (the ceiling for (b));
  (d) the projector alone: a rebuild replaying N events into the read models (bulk: batches of
      5000, inserts with COPY), reading them from the event store (it holds exactly the stream's);
  (e) raw PostgreSQL batched inserts: N one-column rows, 100 per transaction, on the same server
      (the baseline for (d): goal (d) >= 0.5 x (e); (d) is also printed as read-model rows/s);
      (d) and (e) are run ``--repeat`` times (3) in turns, and their medians printed;
  (f) the same rebuild reading EVENTS instead (``from_store=False``: what a rebuild did before it read
      the store, and still does when the stream holds messages the store does not);
  (g) the rebuild (d) of a store of whole session lifecycles instead (requested, scheduled, each
      kernel preparing to started, RUNNING, terminating, terminated: what a platform's history holds,
      most events changing rows that an earlier one inserted);
  (h) the live projector catching up on that same store: the read models reset with every index
      (as a projector finds them after downtime) and ``run_projector`` started, timed from its start
      until it has applied the stream's last message (far behind, it reads them from the event store in
      batches of 5,000, committed durably: ``Projector._catch_up``).
and prints the rates with their ratios. Nothing here is a pass/fail test.

Usage: .venv/bin/python ops/bench/bench_pipeline.py [--events N] [--repeat 3] [--nats-url URL] [--pg-admin-dsn DSN]
Without --nats-url it starts its own nats-server (a given server's EVENTS and BENCH_RAW
streams are deleted!). It always works in a scratch database ``berth_bench_<hex>`` created
through --pg-admin-dsn (default $BERTH_PG_DSN, else postgresql://postgres@127.0.0.1:5432/postgres)
and dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import nats
import psycopg
from psycopg import sql
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from contracts import commands as c  # noqa: E402
from contracts.session import KernelPlacement, KernelSpec, SessionSpec  # noqa: E402
from contracts.status import Reason  # noqa: E402
from contracts.subjects import EVENTS_STREAM  # noqa: E402
from domain import session as session_domain  # noqa: E402
from services.application.context import make_context  # noqa: E402
from services.common.bus import CREDENTIALS_ENV, connect_options  # noqa: E402
from services.common.bus_identities import ADMIN  # noqa: E402
from ops.bench.pg_baselines import batched_rate, scratch_table  # noqa: E402
from services.supervisor.embedded import NatsServer  # noqa: E402
from services.supervisor.embedded_postgres import create_database, drop_database  # noqa: E402
from services.application.sessions import Sessions  # noqa: E402
from services.common.settings import Settings  # noqa: E402
from services.common.gc_tuning import tune_gc  # noqa: E402
from services.projector.main import rebuild_read_models, run_projector  # noqa: E402
from projections.rebuild import PRIMARY_KEYS, reset_read_models  # noqa: E402
from services.relay.main import run_relay  # noqa: E402
from processes import service_processes  # noqa: E402  (ops/bench, the script's folder)

DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
WRITE_BATCH = 100


def session_events(app: Sessions, count: int, prefix: str) -> Iterator[list]:
    """Yields batches of session.requested events, decided by the domain as Sessions.request does."""
    batch: list = []
    for i in range(count):
        command = c.RequestSession(owner="ak-bench", spec=SessionSpec(
            name=f"bench-{i}", image="python:3.11",
            kernels=[KernelSpec(kernel_id=f"{prefix}-k{i}", slots={"cpu": "1", "mem": "1g"})],
        ))
        batch += session_domain.decide(None, command, make_context("ak-bench"), f"{prefix}-s{i}")
        if len(batch) >= WRITE_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def lifecycle_events(app: Sessions, count: int, prefix: str) -> Iterator[list]:
    """Yields batches of about ``count`` events of whole session lifecycles, decided by the domain as
    the services decide them: requested, scheduled, each kernel preparing, progressed, creating and
    started, RUNNING, terminating, each kernel terminated, TERMINATED (two kernels each: 17 events)."""
    batch: list = []
    made, i = 0, 0
    while made < count:
        sid, ctx = f"{prefix}-s{i}", make_context("ak-bench")
        kernels = [f"{prefix}-k{i}-{j}" for j in range(2)]
        commands: list = [c.RequestSession(owner="ak-bench", spec=SessionSpec(
            name=f"bench-{i}", image="python:3.11",
            kernels=[KernelSpec(kernel_id=k, slots={"cpu": "1", "mem": "1g"}) for k in kernels]))]
        commands.append(c.ScheduleSession(placements=[KernelPlacement(kernel_id=k, agent_id="a1") for k in kernels]))
        for k in kernels:
            commands += [c.MarkKernelPreparing(kernel_id=k), c.RecordKernelProgress(kernel_id=k, detail="pulling 1/2"),
                         c.MarkKernelCreating(kernel_id=k), c.MarkKernelStarted(kernel_id=k, container_id=f"c-{k}")]
        commands.append(c.TerminateSession())
        commands += [c.MarkKernelExited(kernel_id=k, exit_code=0, reason=Reason.USER_REQUESTED) for k in kernels]
        state = None
        for command in commands:
            for event in session_domain.decide(state, command, ctx, sid):
                state = session_domain.evolve(state, event)
                batch.append(event)
                made += 1
        if len(batch) >= WRITE_BATCH:
            yield batch
            batch = []
        i += 1
    if batch:
        yield batch


def record(app: Sessions, count: int, prefix: str, history=session_events) -> int:
    """Records ``count`` events (of ``history``) in batches; returns the last position."""
    last = 0
    for batch in history(app, count, prefix):
        last = app.record(batch) or last
    return last


def _position(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT position FROM projection_position").fetchone()
    return row[0] if row else 0


async def wait_until(predicate, timeout: float, interval: float = 0.005) -> float:
    """Polls ``predicate`` until true; returns the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached")
        await asyncio.sleep(interval)


async def stream_messages(js: JetStreamContext, name: str) -> int:
    try:
        return (await js.stream_info(name)).state.messages
    except NotFoundError:
        return 0


async def bench_pipeline(settings: Settings, app: Sessions, js: JetStreamContext, n: int, log_dir: Path) -> tuple[float, float]:
    """Returns (seconds until the last event is visible in the read models, seconds of writing)."""
    with service_processes(("services.relay", "services.projector"), settings.nats_url, settings.pg_dsn, log_dir):
        await wait_until(lambda: _schema(settings.pg_dsn), 30, 0.05)
        await wait_until(lambda: _stream_exists(js), 30, 0.05)
        with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:  # one connection for polling
            start = time.monotonic()
            writer = asyncio.ensure_future(asyncio.to_thread(record, app, n, "p"))
            last = await writer
            written = time.monotonic()
            end = await wait_until(lambda: _position(conn) >= last, 120, 0.005)
    print(f"  (a) wrote {n} events in {written - start:.2f} s; visible in the read models {end - written:.3f} s later")
    return end - start, written - start


async def bench_relay(settings: Settings, app: Sessions, js: JetStreamContext, n: int,
                      history=session_events) -> tuple[float, int, int]:
    """Has the relay publish a new store of ``n`` events of ``history``; returns (seconds, mean payload,
    events stored)."""
    await js.delete_stream(EVENTS_STREAM)
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE berth_events")
    await asyncio.to_thread(record, app, n, "r", history)
    n = await asyncio.to_thread(_stored_events, settings.pg_dsn)  # a lifecycle is recorded whole: a few more
    payload = await _mean_payload(settings.pg_dsn)
    stop = asyncio.Event()
    task = asyncio.create_task(run_relay(settings, stop))
    start = await wait_until(lambda: _has(js, EVENTS_STREAM, 1), 60, 0.001)  # startup excluded
    end = await wait_until(lambda: _has(js, EVENTS_STREAM, n), 120, 0.005)
    stop.set()
    await task
    return end - start, payload, n


async def bench_raw(js: JetStreamContext, n: int, payload_size: int) -> float:
    name = "BENCH_RAW"
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(name)
    await js.add_stream(StreamConfig(name=name, subjects=["bench.>"], storage=StorageType.FILE, duplicate_window=120.0))
    payload = b"x" * payload_size
    start = time.monotonic()
    for i in range(n):
        await js.publish_async(f"bench.session.s{i}.requested", payload, headers={"Nats-Msg-Id": str(i + 1)})
    await js.publish_async_completed()
    elapsed = time.monotonic() - start
    assert await stream_messages(js, name) == n
    await js.delete_stream(name)
    return elapsed


def _stored_events(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM berth_events").fetchone()[0]  # type: ignore[index]


async def bench_projector(settings: Settings, n: int, *, from_store: bool = True) -> float:
    start = time.monotonic()
    reached = await rebuild_read_models(settings, from_store=from_store)
    elapsed = time.monotonic() - start
    assert reached.stream_seq == n, reached
    return elapsed


def _applied_seq(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT stream_seq FROM projection_position").fetchone()
        return row[0] if row else 0


async def bench_catch_up(settings: Settings, n: int) -> float:
    """Resets the read models (every index kept, position 0) and times the live projector from its start
    until it has applied stream sequence ``n``."""
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        reset_read_models(conn)
    async def caught_up() -> bool:
        return await asyncio.to_thread(_applied_seq, settings.pg_dsn) >= n

    stop = asyncio.Event()
    start = time.monotonic()
    task = asyncio.create_task(run_projector(settings, stop))
    try:
        return await wait_until(caught_up, 300, 0.01) - start
    finally:
        stop.set()
        await task


async def _rebuilds_and_baselines(settings: Settings, n: int, repeat: int) -> tuple[list[float], list[float]]:
    """Returns the seconds of ``repeat`` rebuilds (d) of the store and of as many baselines (e), in turns
    (the baseline of a busy machine moves between runs: a ratio of one of each was noise)."""
    rebuilds: list[float] = []
    baselines: list[float] = []
    with scratch_table(settings.pg_dsn):
        for _ in range(repeat):
            rebuilds.append(await bench_projector(settings, n))
            baselines.append(n / await asyncio.to_thread(batched_rate, settings.pg_dsn, n))
    return rebuilds, baselines


async def main_async(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    n = args.events
    admin_dsn = args.pg_admin_dsn or os.environ.get("BERTH_PG_DSN") or DEFAULT_ADMIN_DSN
    db_name = f"berth_bench_{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="berth-bench-"))
    server = None
    nats_url = args.nats_url
    if not nats_url:
        server = NatsServer()
        nats_url = server.start(tmp / "nats")
        os.environ[CREDENTIALS_ENV] = str(server.credentials(ADMIN))  # every connection of the benchmark
    dsn = create_database(admin_dsn, db_name)
    settings = Settings(nats_url=nats_url, pg_dsn=dsn)
    app = Sessions(dsn)
    nc = await nats.connect(**connect_options(nats_url, "bench"))
    js = nc.jetstream()
    try:
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(EVENTS_STREAM)
        print(f"Berth pipeline benchmark: {n} events, {os.cpu_count()} CPUs, NATS {nats_url}, database {db_name}")
        pipeline_s, write_s = await bench_pipeline(settings, app, js, n, tmp)
        relay_s, payload, _ = await bench_relay(settings, app, js, n)
        raw_s = await bench_raw(js, n, payload)
        projector_runs, batched_runs = await _rebuilds_and_baselines(settings, n, args.repeat)
        projector_s, batched_s = statistics.median(projector_runs), statistics.median(batched_runs)
        rebuilt_rows = await asyncio.to_thread(_read_model_rows, dsn)
        stream_s = await bench_projector(settings, n, from_store=False)
        _, lifecycle_payload, lifecycle_n = await bench_relay(settings, app, js, n, lifecycle_events)
        lifecycle_s = await bench_projector(settings, lifecycle_n)
        lifecycle_rows = await asyncio.to_thread(_read_model_rows, dsn)
        catch_up_s = await bench_catch_up(settings, lifecycle_n)
        rows = [
            ("(w) event store writes during (a)", write_s),
            ("(a) pipeline: write -> read model", pipeline_s),
            ("(b) relay: event store -> EVENTS", relay_s),
            ("(c) raw nats-py publish_async", raw_s),
            ("(d) rebuild: event store -> models", projector_s),
            ("(e) raw PostgreSQL batched inserts", batched_s),
            ("(f) rebuild: EVENTS -> read models", stream_s),
        ]
        print(f"\n  events of {payload} bytes on average\n")
        print(f"  {'measure':<38} {'seconds':>8} {'events/s':>10} {'vs (c)':>7}")
        for label, seconds in rows:
            print(f"  {label:<38} {seconds:>8.2f} {n / seconds:>10.0f} {raw_s / seconds:>7.2f}")
        print(f"\n  relay / raw publish_async = {raw_s / relay_s:.2f}; pipeline / writes = {write_s / pipeline_s:.2f}; "
              f"projector / relay = {relay_s / projector_s:.2f}; "
              f"rebuild / batched inserts = {batched_s / projector_s:.2f} (goal >= 0.5); "
              f"rebuild from the event store / from EVENTS = {stream_s / projector_s:.2f}")
        pairs = ", ".join(f"{e / d:.2f}" for d, e in zip(projector_runs, batched_runs))
        print(f"  (d) and (e): medians of {args.repeat} runs each, alternating; (d) / (e) per pair: {pairs}")
        print(f"  the rebuild (d) wrote {rebuilt_rows} read-model rows ({rebuilt_rows / n:.1f} per event): "
              f"{rebuilt_rows / projector_s:.0f} rows/s = {batched_s * rebuilt_rows / n / projector_s:.2f} x the "
              f"batched one-column rows of (e)")
        print(f"  (g) rebuild of whole lifecycles from the event store (requested ... TERMINATED, 2 kernels, "
              f"{lifecycle_payload} bytes on average): {lifecycle_n} events in {lifecycle_s:.2f} s = "
              f"{lifecycle_n / lifecycle_s:.0f} events/s = {batched_s * lifecycle_n / n / lifecycle_s:.2f} x (e); "
              f"{lifecycle_rows} read-model rows")
        print(f"  (h) the live projector catching up on the store of (g) after downtime: {lifecycle_n} events in "
              f"{catch_up_s:.2f} s = {lifecycle_n / catch_up_s:.0f} events/s = {lifecycle_s / catch_up_s:.2f} x (g)")
    finally:
        await nc.close()
        app.close()
        drop_database(admin_dsn, db_name)
        if server is not None:
            server.stop()


async def _has(js: JetStreamContext, name: str, n: int) -> bool:
    return await stream_messages(js, name) >= n


async def _stream_exists(js: JetStreamContext) -> bool:
    try:
        await js.stream_info(EVENTS_STREAM)
    except NotFoundError:
        return False
    return True


def _schema(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT to_regclass('projection_position')").fetchone() != (None,)


def _read_model_rows(dsn: str) -> int:
    """Returns how many rows the read models hold (every table a rebuild writes)."""
    with psycopg.connect(dsn) as conn:
        return sum(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
                   for table in PRIMARY_KEYS)


async def _mean_payload(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        (size,) = conn.execute("SELECT avg(length(state))::int FROM berth_events").fetchone()  # type: ignore[misc]
    return int(size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000, help="events per measure (default 20000)")
    parser.add_argument("--nats-url", default=None, help="use this server (its EVENTS stream is deleted!)")
    parser.add_argument("--pg-admin-dsn", default=None, help="server on which to create the scratch database")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rebuilds (d) and baselines (e), in turns, whose medians are printed (default 3)")
    parser.add_argument("--untuned-gc", action="store_true",
                        help="keep CPython's garbage-collector defaults (the services run with services.common.gc_tuning)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be 1 or more")
    if not args.untuned_gc:
        tune_gc()  # as the services and `berth projections rebuild` run
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
