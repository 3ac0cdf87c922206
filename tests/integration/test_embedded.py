"""The embedded default's processes (NATS, PostgreSQL) and the test fixtures built on them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import nats
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from services.common.bus import connect_options
from services.common.bus_identities import ADMIN
from services.supervisor.embedded import NatsServer, free_port
from services.supervisor.embedded_postgres import EmbeddedPostgres, dsn_with_dbname
from services.supervisor.server_keeper import KeptServer, keep_servers
from tests.support.infra import psql
from tests.support.waiting import async_wait_for, wait_for


async def test_nats_fixture_serves_jetstream(nats_url: str) -> None:
    nc = await nats.connect(**{**connect_options(nats_url, "test"), "max_reconnect_attempts": 0}, connect_timeout=5)
    try:
        info = await nc.jetstream().account_info()
        assert info.limits is not None
    finally:
        await nc.close()


def test_nats_server_restart_reuses_recorded_port(tmp_path: Path) -> None:
    with NatsServer() as server:
        first = server.start(tmp_path)
        assert (tmp_path / "nats.port").read_text().strip() == str(server.port)
        server.stop()
        assert server.pid is None
        assert server.start(tmp_path) == first


def test_nats_server_kill_stops_answering(tmp_path: Path) -> None:
    server = NatsServer()
    port = free_port()
    assert server.start(tmp_path, port=port) == f"nats://127.0.0.1:{port}"
    server.kill()
    wait_for(lambda: not _tcp_answers(port), timeout=5, message="killed nats-server still answers")


def _tcp_answers(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_embedded_postgres_persists_across_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    pg = EmbeddedPostgres()
    dsn = pg.start(data_dir)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
            conn.execute("create table kept (id int primary key, note text)")
            conn.execute("insert into kept values (1, 'survives a restart')")
    finally:
        pg.stop()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2).close()

    with EmbeddedPostgres() as again:
        dsn = again.start(data_dir)
        with psycopg.connect(dsn) as conn:
            assert conn.execute("select note from kept").fetchall() == [("survives a restart",)]


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="connecting as another local user needs root")
def test_embedded_postgres_is_reachable_by_no_other_local_user_when_its_socket_lives_outside_the_cluster(
    tmp_path: Path,
) -> None:
    """A data directory whose path is too long for a socket puts the socket in ``$TMPDIR/berth-pg/<hash>``; the
    server trusts every local connection, and that directory was 0777: any local user was its superuser."""
    data_dir = tmp_path / ("d" * 100)
    with EmbeddedPostgres() as pg:
        dsn = pg.start(data_dir)
        socket_dir = Path(conninfo_to_dict(dsn)["host"])
        assert not socket_dir.is_relative_to(data_dir)  # the case at hand
        assert socket_dir.stat().st_mode & 0o777 == 0o700
        with psycopg.connect(dsn) as conn:
            assert conn.execute("select 1").fetchone() == (1,)

        def as_nobody() -> None:
            os.setgid(65534)
            os.setuid(65534)

        attempt = subprocess.run([psql(), "-h", str(socket_dir), "-U", "postgres", "-d", "postgres", "-c", "select 1"],
                                 preexec_fn=as_nobody, capture_output=True, text=True, timeout=60, cwd="/")
        assert attempt.returncode != 0 and "Permission denied" in attempt.stderr, attempt.stderr


def test_pg_dsn_is_a_fresh_empty_database(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        name = conn.execute("select current_database()").fetchone()[0]
        tables = conn.execute(
            "select count(*) from information_schema.tables where table_schema = 'public'"
        ).fetchone()[0]
    assert name.startswith("berth_test_")
    assert tables == 0


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://postgres@127.0.0.1:5432/postgres",
         "postgresql://postgres@127.0.0.1:5432/other"),
        ("postgresql://postgres:@/postgres?host=/tmp/pg", "postgresql://postgres:@/other?host=/tmp/pg"),
        ("postgresql:///postgres?dbname=x&host=/tmp/pg", "postgresql:///other?host=/tmp/pg"),
        ("host=127.0.0.1 user=postgres dbname=postgres", "host=127.0.0.1 user=postgres dbname=other"),
    ],
)
def test_dsn_with_dbname(dsn: str, expected: str) -> None:
    result = dsn_with_dbname(dsn, "other")
    assert conninfo_to_dict(result) == conninfo_to_dict(expected)
    assert result.startswith("postgresql://") == dsn.startswith("postgresql://")


@pytest.mark.slow
async def test_embedded_servers_that_die_are_started_again_on_their_state_and_address(tmp_path: Path) -> None:
    """`berth up`'s keeper: a SIGKILLed PostgreSQL and nats-server are running again, at the addresses the
    services use, with what they held (before, nothing started them again: Berth waited forever)."""
    nats_server, postgres = NatsServer(), EmbeddedPostgres()
    nats_url = nats_server.start(tmp_path / "nats")
    dsn = postgres.start(tmp_path / "state")
    creds = nats_server.credentials(ADMIN)
    kept = [KeptServer("nats-server", nats_server, nats_url), KeptServer("postgresql", postgres, dsn)]
    stop = asyncio.Event()
    keeping = asyncio.create_task(keep_servers(kept, stop, interval=0.05))
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("create table kept (note text)")
            conn.execute("insert into kept values ('survives a crash')")
        nc = await nats.connect(**{**connect_options(nats_url, "test", creds), "max_reconnect_attempts": 0},
                                connect_timeout=5)
        await nc.jetstream().add_stream(name="KEPT", subjects=["kept.>"])
        await nc.jetstream().publish("kept.one", b"survives a crash")
        await nc.close()
        old_pids = (nats_server.pid, postgres.pid)
        for pid in old_pids:
            os.kill(pid, signal.SIGKILL)

        def postgres_back() -> bool:
            try:
                with psycopg.connect(dsn, connect_timeout=2) as conn:
                    return conn.execute("select note from kept").fetchall() == [("survives a crash",)]
            except psycopg.OperationalError:
                return False

        await async_wait_for(lambda: asyncio.to_thread(postgres_back), timeout=90,
                             message="postgresql was not started again")

        async def nats_back() -> bool:
            try:
                nc = await nats.connect(**{**connect_options(nats_url, "test", creds), "max_reconnect_attempts": 0},
                                        connect_timeout=2, allow_reconnect=False)
            except Exception:  # noqa: BLE001 - not answering yet
                return False
            try:
                return (await nc.jetstream().stream_info("KEPT")).state.messages == 1
            finally:
                await nc.close()

        await async_wait_for(nats_back, timeout=30, message="nats-server was not started again with its stream")
        assert nats_server.pid not in old_pids and postgres.pid not in old_pids
        assert not stop.is_set()
    finally:
        stop.set()
        await keeping
        nats_server.stop()
        postgres.stop()
