"""The embedded default's processes (NATS, PostgreSQL) and the test fixtures built on them."""

from __future__ import annotations

from pathlib import Path

import nats
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from services.common.bus import connect_options
from services.supervisor.embedded import NatsServer, free_port
from services.supervisor.embedded_postgres import EmbeddedPostgres, dsn_with_dbname
from tests.support.waiting import wait_for


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
