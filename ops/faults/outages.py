"""Outages of the infrastructure under a running `berth up`: its PostgreSQL stopped for a while and
started again, its NATS server stopped and started again (same port, same JetStream storage, same
trust). The PostgreSQL is one the caller owns (``EmbeddedPostgres``, given to `berth up` as
BERTH_PG_DSN), never a shared server; the NATS is `berth up`'s embedded one, found by its PID file."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from services.supervisor.embedded import NatsServer
from services.supervisor.embedded_postgres import EmbeddedPostgres

__all__ = ["postgres_outage", "restart_nats"]

STOP_WAIT = 30.0  # seconds for a stopped server's process to end


async def postgres_outage(postgres: EmbeddedPostgres, data_dir: Path, down: float) -> float:
    """Stops ``postgres`` (fast shutdown: every connection ends), keeps it down ``down`` seconds, starts
    it again on the same cluster (same socket: the DSN does not change); returns the seconds it was down."""
    started = time.monotonic()
    await asyncio.to_thread(postgres.stop, STOP_WAIT)
    await asyncio.sleep(down)  # the outage itself, not a synchronisation
    await asyncio.to_thread(postgres.start, data_dir)
    return time.monotonic() - started


def _nats_pid(nats_dir: Path) -> int:
    pid = int(NatsServer.pid_file(nats_dir).read_text().strip())
    if b"nats-server" not in Path(f"/proc/{pid}/cmdline").read_bytes():
        raise RuntimeError(f"no nats-server runs with its state in {nats_dir}")
    return pid


def _ended(pid: int) -> bool:
    """Whether ``pid`` has ended: gone, or a zombie (`berth up`, its parent, reaps it when it gets to it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2:].startswith("Z")


async def _gone(pid: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if _ended(pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def restart_nats(nats_dir: Path, down: float, sig: int = signal.SIGTERM) -> NatsServer:
    """Stops the nats-server that keeps its state in ``nats_dir`` (``sig``: SIGTERM, or SIGKILL for a
    crash), keeps it down ``down`` seconds and starts one again on the same port, storage and trust.
    Returns the new server, which the caller stops at the end."""
    pid = _nats_pid(nats_dir)
    port = int((nats_dir / "nats.port").read_text().strip())
    os.kill(pid, sig)
    if not await _gone(pid, time.monotonic() + STOP_WAIT):
        os.kill(pid, signal.SIGKILL)
        await _gone(pid, time.monotonic() + STOP_WAIT)
    await asyncio.sleep(down)  # the outage itself, not a synchronisation
    server = NatsServer()
    await asyncio.to_thread(server.start, nats_dir, port)
    return server
