"""Benchmark of Berth's runtime: session start and exec round trip, next to raw Docker.

Measures, in one run and on the same machine, with the docker backend:
  (s) session start: ``createSession`` mutation -> RUNNING seen on the ``sessionEvents``
      subscription (the path ``berth run`` takes), N sessions one after another (each one
      terminated and its container gone before the next), interleaved with
  (r) a raw aiodocker ``containers.create`` + ``start`` of the very same container body
      (``container_config``: same image, runner command, mounts, limits, network ``none``),
      timed to ``start`` returning and, separately, until the runner's socket appears (what
      Berth waits for before it reports RUNNING);
  (b) a burst: B sessions requested at once on the one agent (small slots, so that all fit), timed
      until the last is RUNNING, next to B raw create+start of the same body at once, timed until
      the last runner's socket appears (--burst, --burst-rounds);
  (e) the exec round trip of ``print(1)`` through Berth (``execute`` subscription, request ->
      the ``done`` item, on the client's warm websocket: the SDK keeps one per client), next to
  (d) ``docker exec`` of ``python3 -c 'print(1)'`` in the same container, through aiodocker
      and through the docker CLI.
It prints p50/p99 and the ratios, plus the median time between the session's events
(requested -> scheduled -> preparing -> ... -> running). p99 is the nearest rank: with fewer
than 100 samples it is the maximum. Nothing here is a pass/fail test.

Usage: .venv/bin/python ops/bench/bench_runtime.py [-n N] [--exec-n N] [--burst B] [--burst-rounds R] [--image IMG] [--pg-admin-dsn DSN]
It runs ``berth up --backend docker`` as a subprocess (its own nats-server, a data dir in a
temporary directory) on a scratch database ``berth_bench_<hex>`` created through
--pg-admin-dsn (default $BERTH_PG_DSN, else postgresql://postgres@127.0.0.1:5432/postgres),
and removes the database, the process and every container labelled with its agent ids at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiodocker
import msgspec
import nats
from websockets.asyncio.client import connect as ws_connect

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from contracts.execution import (
    ExecDone,
    ExecOutput,
    ExecRequest,
    exec_subject,
    io_subject,
)
from services.agent.backends.docker.spec import LABEL_KERNEL, LABEL_SESSION, KernelPaths
from services.agent.exec_server import open_runner
from services.cli import queries as q
from services.common.bus import connect_options
from services.sdk.client import BerthClient
from services.supervisor.embedded_postgres import create_database, drop_database
from services.sdk.instance import FILE_NAME, read_instance
from raw_docker import (  # noqa: E402  (ops/bench, the script's folder)
    KERNEL_USER,
    SLOTS,
    docker_client,
    docker_exec_api,
    docker_exec_cli,
    raw_burst,
    raw_start,
)

DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_IMAGE = "berth/python:latest"
BURST_SLOTS = {"cpu": "0.1", "mem": "128m"}
"""Slots of each session of a burst: ten fit on a 1-core agent."""
SESSION_EVENTS = """
subscription($id: String!, $from: Int) {
  sessionEvents(sessionId: $id, fromPosition: $from) { position type occurredAt payload }
}
"""
"""Every event of a session (the CLI follows only ``sessionStatus``; the marks need each event's time)."""
GONE = {"TERMINATED", "CANCELLED", "ERROR"}


def pct(samples: list[float], p: float) -> float:
    """Returns the nearest-rank percentile ``p`` (0..100) of ``samples``."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f}"


# --- Berth under test --------------------------------------------------------------------


@contextlib.contextmanager
def berth_up(data_dir: Path, pg_dsn: str, agent_id: str):
    """Runs ``berth up --backend docker`` until the instance file appears; yields the instance."""
    env = {**os.environ, "BERTH_PG_DSN": pg_dsn, "BERTH_DATA_DIR": str(data_dir), "BERTH_AGENT_ID": agent_id,
           "BERTH_AGENT_BACKEND": "docker", "BERTH_DOCKER_STOP_GRACE": "2", "BERTH_NATS_URL": ""}
    log = open(data_dir / "berth-up.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "up", "--backend", "docker"], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (data_dir / FILE_NAME).exists():
            if proc.poll() is not None:
                raise RuntimeError(f"berth up exited ({proc.returncode}); see {data_dir / 'berth-up.log'}")
            if time.monotonic() > deadline:
                raise TimeoutError("berth up did not become ready within 60 s")
            time.sleep(0.1)
        yield read_instance(data_dir)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def _iso(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _status_of(event: dict[str, Any]) -> str | None:
    kind = event["type"]
    if kind == "session.requested":
        return "PENDING"
    if kind == "session.scheduled":
        return "SCHEDULED"
    if kind == "session.status_changed":
        return str(json.loads(event["payload"])["status"])
    return None


async def follow(client: BerthClient, session_id: str, until: set[str], timeout: float = 120) -> dict[str, float]:
    """Follows the session's events until a status in ``until``; returns {status: occurredAt epoch}
    plus ``"_seen"``: the local time the last one arrived."""
    marks: dict[str, float] = {}
    stream = client.subscribe(SESSION_EVENTS, {"id": session_id, "from": 0})
    try:
        async with asyncio.timeout(timeout):
            async for item in stream:
                event = item["sessionEvents"]
                status = _status_of(event)
                if status is not None:
                    marks.setdefault(status, _iso(event["occurredAt"]))
                    if status in until:
                        marks["_seen"] = time.time()
                        marks["_final"] = marks[status]
                        marks["_status"] = status  # type: ignore[assignment]
                        return marks
    finally:
        await stream.aclose()
    raise RuntimeError(f"session {session_id}: event stream ended before {until}")


async def berth_start(client: BerthClient, image: str, slots: dict[str, str] = SLOTS) -> tuple[float, str, dict[str, float]]:
    """Requests a session and waits for RUNNING; returns (seconds, session id, event marks)."""
    payload = {"image": image, "resources": [{"slot": k, "amount": v} for k, v in slots.items()]}
    wall0, t0 = time.time(), time.perf_counter()
    result = await client.create_session(payload)
    marks = await follow(client, result["sessionId"], {"RUNNING"} | GONE)
    elapsed = time.perf_counter() - t0
    if marks["_status"] != "RUNNING":
        raise RuntimeError(f"session {result['sessionId']} ended {marks['_status']} instead of RUNNING")
    marks["_sent"] = wall0
    return elapsed, result["sessionId"], marks


async def berth_remove(client: BerthClient, docker: aiodocker.Docker, session_id: str) -> None:
    """Terminates the session and waits until it is gone and its container removed."""
    await client.execute(q.TERMINATE_SESSION, {"id": session_id})
    await follow(client, session_id, GONE)
    await containers_gone(docker, {LABEL_SESSION: session_id})


async def containers_gone(docker: aiodocker.Docker, labels: dict[str, str], timeout: float = 60) -> None:
    filters = json.dumps({"label": [f"{k}={v}" for k, v in labels.items()]})
    deadline = time.monotonic() + timeout
    while await docker.containers.list(all=True, filters=filters):
        if time.monotonic() > deadline:
            raise TimeoutError(f"containers labelled {labels} still there after {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def berth_exec(client: BerthClient, session_id: str) -> float:
    t0 = time.perf_counter()
    async for data in client.subscribe(q.EXECUTE, {"id": session_id, "code": "print(1)", "mode": "query"}):
        item = data["execute"]
        if item["kind"] == "done":
            elapsed = time.perf_counter() - t0
            if item["exitCode"] != 0:
                raise RuntimeError(f"print(1) exited {item['exitCode']}")
            return elapsed
    raise RuntimeError("execute ended without a done item")


async def ws_handshake(client: BerthClient) -> float:
    """Opens the gateway's websocket and waits for ``connection_ack`` (the fixed cost of a subscription)."""
    t0 = time.perf_counter()
    async with ws_connect("ws" + client.graphql_url[len("http"):], subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": client.connection_params()}))
        while json.loads(await ws.recv()).get("type") != "connection_ack":
            pass
        return time.perf_counter() - t0


async def agent_exec(nc: Any, agent_id: str, kernel_id: str) -> float:
    """``print(1)`` straight to the agent over core NATS (no gateway): request -> ExecDone."""
    t0 = time.perf_counter()
    run_id = uuid.uuid4().hex
    sub = await nc.subscribe(io_subject(agent_id, kernel_id, run_id))
    try:
        request = ExecRequest(run_id=run_id, kernel_id=kernel_id, code="print(1)")
        await nc.request(exec_subject(agent_id), msgspec.json.encode(request), timeout=10)
        async for msg in sub.messages:
            if isinstance(msgspec.json.decode(msg.data, type=ExecOutput), ExecDone):
                return time.perf_counter() - t0
    finally:
        await sub.unsubscribe()
    raise RuntimeError("no ExecDone")


async def runner_exec(socket: Path) -> float:
    """``print(1)`` straight to the kernel runner over its Unix socket: request -> done."""
    t0 = time.perf_counter()
    reader, writer = await open_runner(socket)
    try:
        run = {"op": "run", "run_id": uuid.uuid4().hex, "mode": "query", "code": "print(1)", "stdin": None}
        writer.write((json.dumps(run) + "\n").encode())
        await writer.drain()
        while (line := await reader.readline()) and json.loads(line).get("kind") != "done":
            pass
        return time.perf_counter() - t0
    finally:
        writer.close()


async def berth_burst(client: BerthClient, docker: aiodocker.Docker, image: str, count: int) -> float:
    """Requests ``count`` sessions at once (``BURST_SLOTS`` each, so that they all fit on one agent);
    returns the seconds until the last one was RUNNING, then removes them."""
    starts = await asyncio.gather(*(berth_start(client, image, BURST_SLOTS) for _ in range(count)))
    await asyncio.gather(*(berth_remove(client, docker, sid) for _, sid, _ in starts))
    return max(elapsed for elapsed, _, _ in starts)


# --- the run -----------------------------------------------------------------------------


def bridged_phases(all_marks: list[dict[str, float]]) -> list[tuple[str, float]]:
    order = ["_sent", "PENDING", "SCHEDULED", "PREPARING", "PULLING", "CREATING", "RUNNING", "_seen"]
    names = {"_sent": "createSession sent", "_seen": "RUNNING seen by client"}
    present = [s for s in order if all(s in m for m in all_marks)]
    return [(f"{names.get(a, a)} -> {names.get(b, b)}", statistics.median(m[b] - m[a] for m in all_marks))
            for a, b in zip(present, present[1:])]


async def run(args: argparse.Namespace, instance: Any, raw_agent: str, data_dir: Path) -> None:
    async with docker_client([args.agent_id, raw_agent]) as docker, \
            BerthClient(instance.gateway_url, instance.access_key, instance.secret_key) as client:
        # warm-up (not counted): one of each, so first-use costs (image layers, imports) are out
        await raw_start(docker, args.image, raw_agent, data_dir / "raw")
        _, sid, _ = await berth_start(client, args.image)
        await berth_remove(client, docker, sid)

        berth_s, raw_s, raw_l, marks = [], [], [], []
        for i in range(args.n):
            started, listening = await raw_start(docker, args.image, raw_agent, data_dir / "raw")
            raw_s.append(started)
            raw_l.append(listening)
            elapsed, sid, m = await berth_start(client, args.image)
            berth_s.append(elapsed)
            marks.append(m)
            await berth_remove(client, docker, sid)
            print(f"  start #{i + 1}: berth {elapsed * 1000:.0f} ms, raw create+start {started * 1000:.0f} ms "
                  f"(+socket {listening * 1000:.0f} ms)", file=sys.stderr)

        berth_b, raw_b = [], []
        for i in range(args.burst_rounds):
            raw_b.append(await raw_burst(docker, args.image, raw_agent, data_dir / "raw", args.burst))
            berth_b.append(await berth_burst(client, docker, args.image, args.burst))
            print(f"  burst #{i + 1} of {args.burst}: berth {berth_b[-1] * 1000:.0f} ms, raw create+start+socket "
                  f"{raw_b[-1] * 1000:.0f} ms", file=sys.stderr)

        _, sid, _ = await berth_start(client, args.image)
        filters = json.dumps({"label": [f"{LABEL_SESSION}={sid}"]})
        container = (await docker.containers.list(filters=filters))[0]
        user = str(KERNEL_USER)
        for _ in range(2):  # warm-up
            await berth_exec(client, sid)
            await docker_exec_api(container, user)
            await docker_exec_cli(container.id, user)
        berth_e, api_e, cli_e = [], [], []
        for _ in range(args.exec_n):
            berth_e.append(await berth_exec(client, sid))
            api_e.append(await docker_exec_api(container, user))
            cli_e.append(await docker_exec_cli(container.id, user))
        # where the Berth round trip goes: the websocket, the agent over NATS, the runner alone
        kernel_id = container._container["Labels"][LABEL_KERNEL]
        socket = KernelPaths.of(data_dir, kernel_id).socket
        nc = await nats.connect(**connect_options(instance.nats_url, "bench", instance.nats_creds or None))
        try:
            parts: dict[str, list[float]] = {"websocket connect + ack": [], "agent over NATS (no gateway)": [],
                                             "runner over its socket": []}
            for _ in range(args.exec_n):
                parts["websocket connect + ack"].append(await ws_handshake(client))
                parts["agent over NATS (no gateway)"].append(await agent_exec(nc, args.agent_id, kernel_id))
                parts["runner over its socket"].append(await runner_exec(socket))
        finally:
            await nc.close()
        await berth_remove(client, docker, sid)

    report(args, berth_s, raw_s, raw_l, marks, berth_e, api_e, cli_e, berth_b, raw_b)
    print("\nexec print(1), parts of the Berth round trip (p50 / p99 ms):")
    for name, samples in parts.items():
        print(f"  {name:<40} {ms(statistics.median(samples))} {ms(pct(samples, 99))}")


def report(args, berth_s, raw_s, raw_l, marks, berth_e, api_e, cli_e, berth_b, raw_b) -> None:
    def row(measure: str, ours: list[float], base: list[float], base_name: str) -> None:
        ratio = statistics.median(ours) / statistics.median(base)
        print(f"{measure:<26} {ms(statistics.median(ours))} {ms(pct(ours, 99))}   {base_name:<30} "
              f"{ms(statistics.median(base))} {ms(pct(base, 99))}   {ratio:5.2f}x")

    print(f"\nBerth runtime benchmark: image {args.image}, slots {SLOTS}, docker backend; "
          f"start N={args.n}, exec N={args.exec_n}; times in ms; p99 = nearest rank (the max when N < 100)")
    print(f"{'measure':<26} {'p50':>8} {'p99':>8}   {'baseline':<30} {'p50':>8} {'p99':>8}   ratio (p50)")
    row("session start", berth_s, raw_s, "aiodocker create+start")
    row("session start", berth_s, raw_l, "create+start+runner socket")
    row(f"burst of {args.burst} starts", berth_b, raw_b, f"{args.burst} at once, to socket")
    row("exec print(1)", berth_e, api_e, "docker exec (aiodocker)")
    row("exec print(1)", berth_e, cli_e, "docker exec (CLI)")
    print("\nsession start, median per step (event occurredAt; client steps by wall clock):")
    for name, seconds in bridged_phases(marks):
        print(f"  {name:<40} {ms(seconds)} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10, help="sessions to start (default 10)")
    parser.add_argument("--exec-n", type=int, default=20, help="exec round trips of each kind (default 20)")
    parser.add_argument("--burst", type=int, default=8, help="sessions of each burst, requested at once (default 8)")
    parser.add_argument("--burst-rounds", type=int, default=3, help="bursts of each kind (default 3)")
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--pg-admin-dsn", default=os.environ.get("BERTH_PG_DSN") or DEFAULT_ADMIN_DSN)
    args = parser.parse_args()
    if min(args.n, args.exec_n, args.burst, args.burst_rounds) < 1:
        parser.error("-n, --exec-n, --burst and --burst-rounds must be at least 1")
    suffix = uuid.uuid4().hex[:8]
    args.agent_id = f"bench-{suffix}"
    raw_agent = f"bench-raw-{suffix}"
    db_name = f"berth_bench_{suffix}"
    pg_dsn = create_database(args.pg_admin_dsn, db_name)
    try:
        with tempfile.TemporaryDirectory(prefix="berth-bench-") as tmp:
            data_dir = Path(tmp)
            with berth_up(data_dir, pg_dsn, args.agent_id) as instance:
                asyncio.run(run(args, instance, raw_agent, data_dir))
    finally:
        drop_database(args.pg_admin_dsn, db_name)


if __name__ == "__main__":
    main()
