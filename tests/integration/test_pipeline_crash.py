"""Must-show: the relay and the projector, run as real processes, are SIGKILLed in the middle of
a stream of writes and restarted; afterwards the event store, the EVENTS stream and the read
models hold exactly the same events (no gap, no duplicate, same order), and a rebuild gives
identical tables."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from contracts.subjects import EVENTS_STREAM
from projections.rebuild import dump_read_models
from services.application.context import make_context
from services.supervisor.embedded import NatsServer
from services.application.sessions import Sessions
from tests.support.relay import (  # noqa: F401
    jetstream,
    own_nats,
    request_sessions,
    sessions,
    store_ids,
    stream_count,
    stream_messages,
    stream_positions,
)
from tests.support.waiting import async_wait_for

REPO = Path(__file__).resolve().parents[2]
SESSIONS = 500
HALF = SESSIONS // 2
TERMINATE_EVERY = 10  # every 10th session is cancelled right after it is requested
EVENTS_TOTAL = SESSIONS + SESSIONS // TERMINATE_EVERY


class Service:
    """One service process (``python -m <module>``), with its output in a log file."""

    def __init__(self, module: str, env: dict[str, str], log_dir: Path, *args: str) -> None:
        self.module, self.env, self.args = module, env, args
        self.log = log_dir / f"{module.rsplit('.', 1)[-1]}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args],
                cwd=REPO, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILLs the process this object started (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 20) -> int:
        """Sends SIGTERM and returns the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def services(tmp_path: Path, own_nats: NatsServer, pg_dsn: str) -> Iterator[dict[str, Service]]:
    """Yields unstarted relay and projector processes for this test's NATS and database; kills
    whatever is still running afterwards and prints the logs."""
    env = {**os.environ, "BERTH_NATS_URL": own_nats.url, "BERTH_PG_DSN": pg_dsn, "PYTHONUNBUFFERED": "1"}
    made = {
        "relay": Service("services.relay", env, tmp_path),
        "projector": Service("services.projector", env, tmp_path),
        "rebuild": Service("services.projector", env, tmp_path, "--rebuild"),
    }
    made["rebuild"].log = tmp_path / "rebuild.log"
    try:
        yield made
    finally:
        for service in made.values():
            service.kill()
            if service.log.exists():
                print(f"----- {service.log.name} -----\n{service.log.read_text()[-4000:]}")


def write(app: Sessions, half_done: threading.Event, killed: threading.Event) -> None:
    """Requests SESSIONS sessions (cancelling every TERMINATE_EVERY-th), pausing half-way until
    the services were killed, so that the crash falls in the middle of the writes."""
    for i in range(SESSIONS):
        if i == HALF:
            half_done.set()
            assert killed.wait(60), "the services were never killed"
        request_sessions(app, range(i, i + 1))
        if i % TERMINATE_EVERY == 0:
            app.terminate(f"s-{i}", make_context("ak-test"))


def read_models_position(dsn: str) -> tuple[int, int, int | None]:
    """Returns (position, stream_seq, oid of the position table); zeros before it exists."""
    with psycopg.connect(dsn) as conn:
        (oid,) = conn.execute("SELECT to_regclass('projection_position')::oid").fetchone()  # type: ignore[misc]
        if oid is None:
            return 0, 0, None
        row = conn.execute("SELECT position, stream_seq FROM projection_position").fetchone()
        return (row[0], row[1], oid) if row else (0, 0, oid)


async def test_killed_relay_and_projector_lose_and_duplicate_nothing(
    services: dict[str, Service], sessions: Sessions, pg_dsn: str, own_nats: NatsServer
) -> None:
    relay, projector = services["relay"], services["projector"]
    relay.start()
    projector.start()
    async with jetstream(own_nats.url) as js:
        await async_wait_for(lambda: _stream_exists(js), timeout=30, message="relay did not create EVENTS")
        await async_wait_for(lambda: read_models_position(pg_dsn)[2] is not None, timeout=30)

        half_done, killed = threading.Event(), threading.Event()
        writer = asyncio.create_task(asyncio.to_thread(write, sessions, half_done, killed))
        await async_wait_for(lambda: _has(js, 100), timeout=30, message="relay published nothing")
        relay.kill()
        projector.kill()
        at_kill = (await stream_count(js), len(store_ids(pg_dsn)), read_models_position(pg_dsn)[0])
        killed.set()
        assert 0 < at_kill[0] < EVENTS_TOTAL, f"not killed in the middle: {at_kill}"

        relay.start()
        projector.start()
        await asyncio.wait_for(writer, 120)
        ids = store_ids(pg_dsn)
        assert len(ids) == EVENTS_TOTAL
        await async_wait_for(lambda: _has(js, len(ids)), timeout=60, message="stream did not catch up")
        await async_wait_for(lambda: read_models_position(pg_dsn)[0] == ids[-1], timeout=60,
                             message="read models did not catch up")
        assert relay.alive() and projector.alive()
        messages = await stream_messages(js)
        last_seq = (await js.stream_info(EVENTS_STREAM)).state.last_seq

    positions = stream_positions(messages)
    assert positions == ids, "stream and event store differ (gap, duplicate or order)"
    assert len(set(positions)) == len(positions) == EVENTS_TOTAL
    with psycopg.connect(pg_dsn) as conn:
        logged = conn.execute("SELECT position, stream_seq FROM event_log ORDER BY position").fetchall()
        assert [p for p, _ in logged] == ids
        assert [s for _, s in logged] == [m.seq for m in messages]
        assert conn.execute("SELECT count(*), count(DISTINCT session_id) FROM sessions").fetchone() == (SESSIONS, SESSIONS)
        cancelled = conn.execute("SELECT count(*) FROM sessions WHERE status = 'CANCELLED'").fetchone()
        assert cancelled == (SESSIONS // TERMINATE_EVERY,)
        before = dump_read_models(conn)
    assert relay.terminate() == 0
    assert projector.terminate() == 0
    print(f"killed at stream={at_kill[0]} store={at_kill[1]} read models={at_kill[2]}")

    # rebuild: drop, recreate and replay with `python -m services.projector --rebuild`
    old_table = read_models_position(pg_dsn)[2]
    rebuild = services["rebuild"]
    rebuild.start()
    await async_wait_for(
        lambda: (lambda p: p[2] != old_table and p[1] == last_seq)(read_models_position(pg_dsn)),
        timeout=60, message="rebuild did not replay the stream",
    )
    assert rebuild.terminate() == 0
    with psycopg.connect(pg_dsn) as conn:
        assert dump_read_models(conn) == before


async def _stream_exists(js) -> bool:
    try:
        await js.stream_info(EVENTS_STREAM)
    except Exception:  # noqa: BLE001 - not there yet
        return False
    return True


async def _has(js, count: int) -> bool:
    return await stream_count(js) >= count
