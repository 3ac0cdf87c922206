"""Benchmark of apps inside sessions (``berth app``, DESIGN.md §12), next to a plain loopback connection.

Measures, in one run and on the same machine, with the docker backend (the kernel's network is ``none``):
  (c) opening a connection to an app in a session and one round trip on it: the SDK's ``open_app_tunnel``
      (a signed websocket to the gateway, the agent's offer over the bus, its listener, the runner's
      ``connect``) then ``ping`` -> ``pong``; next to the same on a plain TCP connection to the same
      server code run on this host (the baseline: no Berth at all);
  (r) round trips on an open connection (``ping`` -> ``pong``), tunnel vs plain;
  (t) throughput: the server sends ``--mib`` MiB at once, read whole, over the tunnel, over ``berth app``'s
      local port (one more hop: the CLI), and over a plain loopback connection.
It prints p50/p99 (nearest rank) and MiB/s, with the ratios to the plain connection. Nothing here is a
pass/fail test.

Usage: .venv/bin/python ops/bench/bench_apps.py [-n N] [--mib M] [--image IMG] [--pg-admin-dsn DSN]
It runs ``berth up --backend docker`` as ``bench_runtime.py`` does (a scratch database, removed at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiodocker

from bench_runtime import (  # noqa: E402  (ops/bench, the script's folder; it puts the project on sys.path)
    DEFAULT_ADMIN_DSN, DEFAULT_IMAGE, ROOT, berth_remove, berth_start, berth_up, ms, pct,
)
from services.sdk.app_tunnel import open_app_tunnel
from services.sdk.client import BerthClient
from services.supervisor.embedded_postgres import create_database, drop_database

PORT = 7070
SERVER = r"""
import socket, threading
BLOB = bytes(range(256)) * 4096
def serve(conn):
    with conn, conn.makefile("rb") as lines:
        for line in lines:
            if line.startswith(b"ping"):
                conn.sendall(b"pong\n")
            else:
                left = int(line)
                while left > 0:
                    conn.sendall(BLOB[:min(left, len(BLOB))])
                    left -= len(BLOB)
listener = socket.create_server(("127.0.0.1", PORT_ARG))
while True:
    threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()
"""


async def _round_trip(send, receive) -> float:
    started = time.perf_counter()
    await send(b"ping\n")
    got = b""
    while not got.endswith(b"\n"):
        got += await receive()
    return time.perf_counter() - started


async def _download(send, receive, size: int) -> float:
    started = time.perf_counter()
    await send(f"{size}\n".encode())
    got = 0
    while got < size:
        got += len(await receive())
    return time.perf_counter() - started


def _tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
    async def send(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    async def receive() -> bytes:
        data = await reader.read(1 << 20)
        if not data:
            raise ConnectionError("closed")
        return data

    return send, receive


async def plain(port: int, n: int, size: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"connect": [], "rtt": [], "download": []}
    for _ in range(n):
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        send, receive = _tcp(reader, writer)
        await _round_trip(send, receive)
        out["connect"].append(time.perf_counter() - started)
        out["rtt"].append(await _round_trip(send, receive))
        writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    send, receive = _tcp(reader, writer)
    out["download"] = [await _download(send, receive, size) for _ in range(3)]
    writer.close()
    return out


async def tunnelled(client: BerthClient, session_id: str, n: int, size: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"connect": [], "rtt": [], "download": []}
    for _ in range(n):
        started = time.perf_counter()
        tunnel = await open_app_tunnel(client, session_id, PORT)
        send, receive = tunnel.send, tunnel.recv
        await _round_trip(send, receive)
        out["connect"].append(time.perf_counter() - started)
        out["rtt"].append(await _round_trip(send, receive))
        await tunnel.close()
    tunnel = await open_app_tunnel(client, session_id, PORT)
    out["download"] = [await _download(tunnel.send, tunnel.recv, size) for _ in range(3)]
    await tunnel.close()
    return out


async def through_cli(env: dict[str, str], session_id: str, size: int) -> list[float]:
    app = subprocess.Popen([sys.executable, "-m", "services.cli", "app", session_id, str(PORT)], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, text=True)
    try:
        line = await asyncio.to_thread(app.stdout.readline)  # type: ignore[union-attr]
        port = int(re.search(r":(\d+) \(http", line).group(1))  # type: ignore[union-attr]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        send, receive = _tcp(reader, writer)
        downloads = [await _download(send, receive, size) for _ in range(3)]
        writer.close()
        return downloads
    finally:
        app.terminate()
        app.wait(timeout=10)


async def run(args: argparse.Namespace, instance, data_dir: Path) -> None:
    local_port = _free_port()
    local = subprocess.Popen([sys.executable, "-c", SERVER.replace("PORT_ARG", str(local_port))])
    size = args.mib << 20
    try:
        async with aiodocker.Docker() as docker, \
                BerthClient(instance.gateway_url, instance.access_key, instance.secret_key) as client:
            _, session_id, _ = await berth_start(client, args.image)
            code = SERVER.replace("PORT_ARG", str(PORT))
            started = f"(setsid python3 -c {_quoted(code)} > /dev/null 2>&1 &)"
            async for _ in client.subscribe(
                    'subscription($id: String!, $code: String!) { execute(sessionId: $id, code: $code, '
                    'mode: "batch") { kind } }', {"id": session_id, "code": started}):
                pass
            await _until_listening(client, session_id)
            await plain(local_port, 2, 1 << 20)  # warm-up
            await tunnelled(client, session_id, 2, 1 << 20)
            base = await plain(local_port, args.n, size)
            berth = await tunnelled(client, session_id, args.n, size)
            env = {**os.environ, "BERTH_DATA_DIR": str(data_dir)}
            cli = await through_cli(env, session_id, size)
            await berth_remove(client, docker, session_id)
    finally:
        local.terminate()
        local.wait(timeout=10)
    print(f"\napps in a session, {args.n} connections, {args.mib} MiB downloads (p50 / p99 ms, or MiB/s):")
    for name, label in (("connect", "open + first round trip"), ("rtt", "round trip on an open connection")):
        b, p = berth[name], base[name]
        print(f"  {label:<34} tunnel {ms(statistics.median(b))} {ms(pct(b, 99))}   plain loopback "
              f"{ms(statistics.median(p))} {ms(pct(p, 99))}")
    rate = {k: args.mib / min(v) for k, v in (("tunnel", berth["download"]), ("berth app", cli),
                                             ("plain", base["download"]))}
    print(f"  {'download (best of 3)':<34} tunnel {rate['tunnel']:.0f} MiB/s, berth app {rate['berth app']:.0f} "
          f"MiB/s, plain loopback {rate['plain']:.0f} MiB/s (tunnel / plain {rate['tunnel'] / rate['plain']:.2f})")


def _quoted(code: str) -> str:
    return "'" + code.replace("'", "'\\''") + "'"


async def _until_listening(client: BerthClient, session_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await (await open_app_tunnel(client, session_id, PORT)).close()
            return
        except Exception:  # noqa: BLE001 - not listening yet
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def _free_port() -> int:
    import socket

    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        return spare.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50, help="connections of each kind (default 50)")
    parser.add_argument("--mib", type=int, default=256, help="MiB of each download (default 256)")
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--pg-admin-dsn", default=os.environ.get("BERTH_PG_DSN") or DEFAULT_ADMIN_DSN)
    args = parser.parse_args()
    if args.n < 1 or args.mib < 1:
        parser.error("-n and --mib must be at least 1")
    suffix = uuid.uuid4().hex[:8]
    db_name = f"berth_bench_{suffix}"
    pg_dsn = create_database(args.pg_admin_dsn, db_name)
    try:
        with tempfile.TemporaryDirectory(prefix="berth-bench-") as tmp:
            data_dir = Path(tmp)
            with berth_up(data_dir, pg_dsn, f"bench-{suffix}") as instance:
                asyncio.run(run(args, instance, data_dir))
    finally:
        drop_database(args.pg_admin_dsn, db_name)


if __name__ == "__main__":
    main()
