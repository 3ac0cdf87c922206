"""The Grafana dashboards of ops/grafana: every panel's query, with Grafana's macros expanded as Grafana
expands them, runs on the read models of a real `berth up` as the role the dashboards log in as and
shows what the platform holds; that role reads nothing else and writes nothing."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.e2e.conftest import RunningBerth, berth_env, running
from tests.support.infra import psql
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

GRAFANA = Path(__file__).resolve().parents[2] / "ops" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "berth-overview.json"
ROLE = "berth_dashboards"
PASSWORD = "dashboards-test-password"


@pytest.fixture
def dashboards_role(pg_admin_dsn: str) -> Iterator[None]:
    """The role made by ops/grafana/create-role.sh, before Berth makes its tables; dropped afterwards
    when this fixture made it (roles are the server's, not a database's)."""
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        existed = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone() is not None
    params = conninfo_to_dict(pg_admin_dsn)
    env = {**os.environ, "BERTH_DASHBOARDS_PG_PASSWORD": PASSWORD, "PSQL": psql(),
           "PGHOST": str(params.get("host", "")), "PGPORT": str(params.get("port", "5432")),
           "PGUSER": str(params.get("user", "postgres")), "PGDATABASE": str(params.get("dbname", "postgres"))}
    subprocess.run([str(GRAFANA / "create-role.sh")], env=env, check=True, capture_output=True, timeout=60)
    yield
    if not existed:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            try:
                admin.execute(f"DROP ROLE {ROLE}")
            except psycopg.errors.DependentObjectsStillExist:  # granted in another database meanwhile: kept
                pass


@pytest.fixture
def berth(dashboards_role: None, tmp_path: Path, pg_dsn: str) -> Iterator[RunningBerth]:
    env = berth_env(tmp_path / "berth", BERTH_PG_DSN=pg_dsn, BERTH_AGENT_CAPACITY="cpu=4,mem=8g")
    with running(tmp_path / "berth", env) as started:
        yield started


def panels() -> list[dict[str, Any]]:
    return list(json.loads(DASHBOARD.read_text())["panels"])


def grafana_sql(raw: str, start: dt.datetime, end: dt.datetime, interval: str) -> str:
    """Expands the macros of Grafana's PostgreSQL data source that the dashboards use, as Grafana does."""
    stamp = {"from": f"'{start.isoformat()}'", "to": f"'{end.isoformat()}'"}
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 BETWEEN {stamp['from']} AND {stamp['to']}", raw)
    sql = sql.replace("$__timeFrom()", stamp["from"]).replace("$__timeTo()", stamp["to"])
    sql = sql.replace("$__interval", interval)
    assert "$__" not in sql, f"a macro this test does not expand: {sql}"
    return sql


def as_dashboards(berth: RunningBerth) -> psycopg.Connection[Any]:
    """A connection to `berth up`'s database as the dashboards' role, with its password (as Grafana's)."""
    return psycopg.connect(make_conninfo(str(berth.instance()["pg_dsn"]), user=ROLE, password=PASSWORD),
                           autocommit=True)


def run_panels(berth: RunningBerth) -> dict[str, list[list[dict[str, Any]]]]:
    """Every panel's targets' rows (as dicts by column), by panel title, over the last hour (1-minute
    points, up to a minute ahead: the last point is now)."""
    now = dt.datetime.now(dt.UTC)
    results: dict[str, list[list[dict[str, Any]]]] = {}
    with as_dashboards(berth) as conn:
        for panel in panels():
            results[panel["title"]] = []
            for target in panel["targets"]:
                cursor = conn.execute(grafana_sql(target["rawSql"], now - dt.timedelta(hours=1),
                                                  now + dt.timedelta(minutes=1), "1m"))
                names = [column.name for column in cursor.description or ()]
                results[panel["title"]].append([dict(zip(names, row)) for row in cursor.fetchall()])
    return results


def test_the_dashboard_and_its_data_source_are_provisioned_together() -> None:
    datasource = (GRAFANA / "provisioning" / "datasources" / "berth.yaml").read_text()
    uid = re.search(r"^\s+uid: (\S+)$", datasource, re.MULTILINE)
    assert uid is not None and re.search(rf"^\s+user: {ROLE}$", datasource, re.MULTILINE)
    found = panels()
    assert len({panel["id"] for panel in found}) == len(found)
    for panel in found:
        assert panel["datasource"]["uid"] == uid.group(1) and panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid.group(1) and target["rawSql"].strip(), panel["title"]
    provider = (GRAFANA / "provisioning" / "dashboards" / "berth.yaml").read_text()
    assert "path: /var/lib/grafana/dashboards/berth" in provider


def test_every_panel_shows_the_platform_as_the_read_models_hold_it(berth: RunningBerth, tmp_path: Path) -> None:
    for name in ("first", "second"):
        berth.berth("session", "create", "-n", name, "-r", "cpu=1,mem=1g")
    berth.berth("session", "create", "-n", "ended", "-r", "cpu=1,mem=1g")
    berth.berth("session", "rm", "ended")
    berth.berth("session", "create", "-n", "waiting", "-r", "cpu=3,mem=1g", "--no-wait")  # 2 of 4 CPUs are free
    berth.berth("vfolder", "create", "data")
    (tmp_path / "weights.bin").write_bytes(b"w" * 4096)
    berth.berth("vfolder", "upload", "data", str(tmp_path / "weights.bin"))

    def pending_planned() -> bool:
        waiting = [s for s in berth.berth_json("session", "ls", "--all") if s["name"] == "waiting"]
        return bool(waiting) and waiting[0]["status"] == "PENDING" and bool(waiting[0].get("pendingReason"))

    wait_for(pending_planned, timeout=30, message="the session asking 3 CPUs was not left pending by a pass")
    shown = run_panels(berth)

    assert shown["Live sessions by status"] == [[{"status": "PENDING", "sessions": 1},
                                                 {"status": "RUNNING", "sessions": 2}]]
    assert [round(v) for v in shown["Slots in use (agents alive)"][0][0].values()] == [50, 25]  # 2 of 4 cpu, 2 of 8g
    [pending] = shown["Pending sessions by reason"][0]
    assert pending["sessions"] == 1 and pending["reason"] != "not planned yet" and pending["oldest waits"] >= 0
    alive = shown["Sessions alive"][0]
    assert (alive[-1]["running"], alive[-1]["not running yet"]) == (2, 1)  # the last point is now
    assert len(alive) >= 60 and all(point["running"] <= 3 for point in alive)
    requested, ended = shown["Sessions requested and ended"]
    assert sum(row["requested"] for row in requested) == 4
    assert [(row["terminated"], row["ended in error"], row["cancelled"]) for row in ended] == [(1, 0, 0)]
    assert sum(1 for row in shown["Time to RUNNING"][0] if row["p50"] > 0) >= 1
    assert shown["Sessions ended in error, by reason"] == [[]]
    [agent] = shown["Agents"][0]
    assert (agent["status"], agent["kernels"], agent["cpu held"], agent["cpu"]) == ("ALIVE", 2, 2, 4)
    assert [(row["project"], row["sessions"], row["cpu"]) for row in shown["Slots held by project"][0]] == [
        ("default", 2, 2)]
    [storage] = shown["Storage by quota scope"][0]
    assert (storage["quota scope"], storage["folders"]) == ("user:admin", 1) and storage["used"] >= 4096
    events = {row["metric"] for row in shown["Events"][0]}
    assert {"session.requested", "session.scheduled", "agent.kernel_assigned"} <= events


def test_the_dashboards_role_reads_only_what_the_dashboards_show(berth: RunningBerth) -> None:
    refused = ("SELECT payload FROM event_log LIMIT 1", "SELECT * FROM berth_events LIMIT 1",
               "SELECT * FROM keypairs LIMIT 1", "SELECT * FROM auth_tokens LIMIT 1", "SELECT * FROM users LIMIT 1",
               "DELETE FROM sessions", "INSERT INTO event_log (position) VALUES (0)")
    with as_dashboards(berth) as conn:
        conn.execute("SET default_transaction_read_only = off")  # its own setting: the privileges still refuse
        for statement in refused:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    with as_dashboards(berth) as conn:
        settings = [conn.execute(f"SHOW {name}").fetchone() for name in ("statement_timeout",
                                                                          "default_transaction_read_only")]
        assert settings == [("10s",), ("on",)]  # a runaway panel's query ends; nothing writes, not even a temp table
        assert conn.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user").fetchone() == (8,)

    berth.berth("projections", "rebuild")  # the tables made again: granted again with them
    assert run_panels(berth)["Agents"][0][0]["status"] == "ALIVE"
