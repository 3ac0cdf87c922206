"""Helpers shared by the relay, projector and pipeline tests (no tests here): a NATS server of
their own (so that streams never leak between tests), session requests, and readers of the
event store, the stream and the read models."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import nats
import psycopg
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts import commands as c
from contracts.session import KernelSpec, SessionSpec
from contracts.subjects import EVENTS_STREAM, HEADER_POSITION
from projections.position import Position, read_position
from services.application.context import make_context
from services.common.bus import CREDENTIALS_ENV, connect_options
from services.common.bus_identities import ADMIN
from services.supervisor.embedded import NatsServer
from services.application.sessions import Sessions
from services.common.settings import Settings


class StreamMessage(NamedTuple):
    seq: int
    subject: str
    headers: dict[str, str]
    data: bytes


@pytest.fixture
def own_nats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NatsServer]:
    """Yields a nats-server started for this test alone; meanwhile ``BERTH_NATS_CREDS`` names its
    ``admin`` credential (as the session's ``nats_server`` fixture does for its own)."""
    server = NatsServer()
    server.start(tmp_path / "nats")
    monkeypatch.setenv(CREDENTIALS_ENV, str(server.credentials(ADMIN)))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(own_nats: NatsServer, pg_dsn: str) -> Settings:
    """Returns settings pointing at this test's NATS server and database."""
    return Settings(nats_url=own_nats.url, pg_dsn=pg_dsn)


@pytest.fixture
def sessions(pg_dsn: str) -> Iterator[Sessions]:
    """Yields the session use cases on this test's database (the event store table exists)."""
    app = Sessions(pg_dsn)
    try:
        yield app
    finally:
        app.close()


@contextlib.asynccontextmanager
async def jetstream(url: str) -> AsyncIterator[JetStreamContext]:
    """Yields a JetStream context on ``url``, closed afterwards."""
    nc: Client = await nats.connect(**connect_options(url, "test-relay"), connect_timeout=5)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


def request_command(index: int) -> c.RequestSession:
    """Returns the request of a one-kernel session numbered ``index``."""
    return c.RequestSession(owner="ak-test", spec=SessionSpec(
        name=f"job-{index}",
        image="python:3.11",
        kernels=[KernelSpec(kernel_id=f"k-{index}", slots={"cpu": "1", "mem": "1g"})],
    ))


def request_sessions(app: Sessions, indices: range) -> list[int]:
    """Requests one session per index (id ``s-<index>``); returns their positions."""
    return [app.request(f"s-{i}", request_command(i), make_context("ak-test")) for i in indices]


def store_ids(dsn: str) -> list[int]:
    """Returns every notification id of the event store, in order."""
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT notification_id FROM berth_events ORDER BY notification_id")]


def store_notifications(dsn: str) -> list[tuple[int, str, str, bytes]]:
    """Returns (id, topic, originator id, state) of every stored event, in order."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT notification_id, topic, originator_id, state FROM berth_events ORDER BY notification_id"
        ).fetchall()
    return [(r[0], r[1], r[2], bytes(r[3])) for r in rows]


async def stream_count(js: JetStreamContext) -> int:
    """Returns the number of messages in EVENTS (0 when it does not exist yet)."""
    try:
        return (await js.stream_info(EVENTS_STREAM)).state.messages
    except NotFoundError:
        return 0


async def stream_messages(js: JetStreamContext) -> list[StreamMessage]:
    """Returns every message of EVENTS, in stream order."""
    info = await js.stream_info(EVENTS_STREAM)
    messages = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(EVENTS_STREAM, seq=seq)
        messages.append(StreamMessage(seq, msg.subject or "", dict(msg.headers or {}), msg.data or b""))
    return messages


def stream_positions(messages: list[StreamMessage]) -> list[int]:
    """Returns the Berth-Position of each message, in stream order."""
    return [int(m.headers[HEADER_POSITION]) for m in messages]


def read_model_rows(dsn: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Returns the rows of ``query`` on the read models."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


def has_schema(dsn: str) -> bool:
    """Whether the projector has created its tables."""
    with psycopg.connect(dsn) as conn:
        return _has_schema(conn)


def _has_schema(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT to_regclass('projection_position')").fetchone() != (None,)


def _applied(dsn: str) -> Position:
    """Returns the applied position, (0, 0) before the projector created its tables."""
    with psycopg.connect(dsn) as conn:
        return read_position(conn) if _has_schema(conn) else Position(0, 0)


def applied_position(dsn: str) -> int:
    """Returns the applied position, 0 before the projector created its tables."""
    return _applied(dsn).position


def applied_seq(dsn: str) -> int:
    """Returns the applied stream sequence, 0 before the projector created its tables."""
    return _applied(dsn).stream_seq


async def published(js: JetStreamContext, count: int) -> bool:
    """Whether EVENTS holds stream sequence ``count`` (the relay has published that many events)."""
    return (await js.stream_info(EVENTS_STREAM)).state.last_seq >= count


async def run_until_stopped(coro_factory: Any, *args: Any) -> tuple[asyncio.Event, asyncio.Task]:
    """Starts ``coro_factory(*args, stop)`` as a task; returns its stop event and the task."""
    stop = asyncio.Event()
    return stop, asyncio.create_task(coro_factory(*args, stop))


async def stop_task(stop: asyncio.Event, task: asyncio.Task, timeout: float = 15.0) -> None:
    """Sets ``stop`` and waits for ``task`` to finish (re-raising its error)."""
    stop.set()
    await asyncio.wait_for(task, timeout)
