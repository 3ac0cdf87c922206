"""Fixtures and helpers shared by the gateway's integration tests (imported by test_gateway_*.py).

The read-model tables come from ``projections/schema.sql``; rows are inserted
directly, as the projector would, so these tests do not depend on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from contracts.tenancy import user_id
from contracts.tenancy_commands import CreateUser
from services.application.context import make_context
from services.common.settings import Settings
from services.application.tenancy import Tenancy
from services.gateway.app import GatewayApp
from services.gateway.auth.keypairs import create_keypair, ensure_admin_keypair
from services.sdk.client import BerthClient
from services.gateway.main import build_app, run_gateway
from services.gateway.resources import READ_WAIT
from tests.support.publish import fresh_bus

SCHEMA = Path(__file__).resolve().parents[2] / "projections" / "schema.sql"
CREATE = "mutation($input: CreateSessionInput!) { createSession(input: $input) { sessionId position } }"
TERMINATE = "mutation($id: String!) { terminateSession(sessionId: $id) { sessionId position } }"


class Keys:
    """The keypairs of a test: a superadmin and two users."""

    def __init__(self, admin: tuple[str, str], alice: tuple[str, str], bob: tuple[str, str]) -> None:
        self.admin, self.alice, self.bob = admin, alice, bob


@pytest.fixture
def read_models(pg_dsn: str) -> str:
    """Returns ``pg_dsn`` after creating the read-model tables in it."""
    create_read_models(pg_dsn)
    return pg_dsn


def create_read_models(dsn: str) -> None:
    """Creates the read-model tables (``projections/schema.sql``) in ``dsn``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA.read_text())


def create_user(dsn: str, name: str, *, role: str = "user", domain: str = "default",
                projects: tuple[str, ...] = ("default",)) -> None:
    """Records a new user (the domain and projects must exist)."""
    with Tenancy(dsn) as tenancy:
        command = CreateUser(name=name, domain=domain, role=role, projects=list(projects))
        tenancy.handle(user_id(name), command, make_context("test"))


@pytest.fixture
def keys(pg_dsn: str) -> Keys:
    """Returns a superadmin keypair and the keypairs of users alice and bob (domain and project default)."""
    admin = ensure_admin_keypair(pg_dsn)
    assert admin is not None
    create_user(pg_dsn, "alice")
    create_user(pg_dsn, "bob")
    return Keys(admin, create_keypair(pg_dsn, "alice"), create_keypair(pg_dsn, "bob"))


@pytest.fixture
async def gateway(read_models: str, keys: Keys) -> AsyncIterator[GatewayApp]:
    """Yields a gateway app (no server) on the test database, read waits bounded to 2 s."""
    app = build_app(Settings(pg_dsn=read_models), read_wait=2.0)
    try:
        yield app
    finally:
        await app.aclose()


@pytest.fixture
async def client_for(gateway: GatewayApp) -> AsyncIterator[Callable[[tuple[str, str]], BerthClient]]:
    """Yields a factory of clients that talk to the gateway app in process (httpx.ASGITransport)."""
    clients: list[BerthClient] = []

    def make(keypair: tuple[str, str]) -> BerthClient:
        client = BerthClient("http://gateway.test", *keypair, transport=httpx.ASGITransport(app=gateway))
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def clean_streams(nats_url: str) -> AsyncIterator[Any]:
    """Yields a JetStream context whose Berth streams were deleted and re-created (empty)."""
    async with fresh_bus(nats_url) as js:
        yield js


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[str]:
    """Runs a real gateway (uvicorn on a free loopback port when ``settings.gateway_port`` is 0) and
    yields its base URL; stops it on exit."""
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_gateway(settings, stop, ready.set_result))
    done, _ = await asyncio.wait({task, ready}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        await task
    assert ready.done(), "the gateway did not start within 30 s"
    try:
        yield ready.result()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@contextlib.contextmanager
def serving_in_thread(settings: Settings, *, read_wait: float = READ_WAIT) -> Iterator[str]:
    """Runs a real gateway on an event loop of its own in a thread (for synchronous clients such as
    schemathesis' ``requests``) and yields its base URL; stops it on exit."""
    started: queue.Queue[tuple[asyncio.AbstractEventLoop, asyncio.Event, str] | BaseException] = queue.Queue()

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        await run_gateway(settings, stop, lambda url: started.put((loop, stop, url)), read_wait=read_wait)

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            started.put(exc)

    thread = threading.Thread(target=run, name="gateway", daemon=True)
    thread.start()
    outcome = started.get(timeout=30)
    if isinstance(outcome, BaseException):
        raise outcome
    loop, stop, url = outcome
    try:
        yield url
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        assert not thread.is_alive(), "the gateway thread did not stop within 30 s"


@pytest.fixture
async def served(read_models: str, keys: Keys, nats_url: str, clean_streams: Any) -> AsyncIterator[str]:
    """Yields the base URL of a real gateway (uvicorn on a free loopback port)."""
    settings = Settings(pg_dsn=read_models, nats_url=nats_url, gateway_host="127.0.0.1", gateway_port=0)
    async with serving(settings) as url:
        yield url


def count_events(dsn: str, *, excluding: tuple[str, ...] = ()) -> int:
    """Returns the number of events in the event store, those of the aggregates ``excluding`` aside
    (an agent of the test, whose own events a timer makes: heartbeats lost and recovered)."""
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM berth_events WHERE NOT originator_id = ANY(%s)",
                            (list(excluding),)).fetchone()[0]


def project_session(
    dsn: str, session_id: str, owner: str, *, position: int, created_at: dt.datetime | None = None,
    status: str = "PENDING", name: str | None = None,
) -> None:
    """Writes a session, its kernel and the projection position as the projector would."""
    created_at = created_at or dt.datetime.now(dt.UTC)
    slots = json.dumps({"cpu": "1", "mem": "1073741824"})
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO sessions (session_id, name, owner, image, session_type, status, requested_slots,"
            " cluster_size, status_history, created_at, updated_at, version, last_position)"
            " VALUES (%s, %s, %s, 'berth/python:latest', 'interactive', %s, %s, 1, %s, %s, %s, 1, %s)",
            (session_id, name or f"session-{session_id[:8]}", owner, status, slots,
             json.dumps({status: created_at.isoformat()}), created_at, created_at, position),
        )
        conn.execute(
            "INSERT INTO kernels (kernel_id, session_id, cluster_role, cluster_idx, status, slots, created_at, updated_at)"
            " VALUES (%s, %s, 'main', 0, %s, %s, %s, %s)",
            (f"{session_id}-k0", session_id, status, slots, created_at, created_at),
        )
        set_position(conn, position)


def set_position(conn: psycopg.Connection, position: int) -> None:
    """Moves the read models' position forward to ``position``."""
    conn.execute(
        "INSERT INTO projection_position (projection, position, stream_seq) VALUES ('read_models', %s, %s)"
        " ON CONFLICT (projection) DO UPDATE SET position = GREATEST(projection_position.position, EXCLUDED.position)",
        (position, position),
    )
