"""Upkeep of the read models (``projections.upkeep``): the tables the projector churns are vacuumed and
analyzed once enough of their rows are dead or changed, whatever PostgreSQL's autovacuum does."""

from __future__ import annotations

import psycopg
import pytest

from contracts import agent as ag
from projections.upkeep import FLOOR, TableStats, Tended, due, tend
from tests.support.projections import Builder, Feeder, build, read_models, slots  # noqa: F401
from tests.support.waiting import wait_for


@pytest.mark.parametrize(
    ("stats", "expected"),
    [
        (TableStats("agents", live=10, dead=FLOOR + 1, changed=0), Tended(["agents"], [])),
        (TableStats("agents", live=10, dead=FLOOR - 1, changed=0), Tended([], [])),
        (TableStats("kernels", live=10_000, dead=1_049, changed=0), Tended([], [])),  # 50 + 10 % of 10,000
        (TableStats("kernels", live=10_000, dead=1_050, changed=1_050), Tended(["kernels"], ["kernels"])),
        (TableStats("sessions", live=0, dead=0, changed=FLOOR), Tended([], ["sessions"])),  # a table filled from empty
    ],
)
def test_a_table_is_due_once_enough_of_its_rows_are_dead_or_changed(stats: TableStats, expected: Tended) -> None:
    assert due([stats]) == expected


def _counts(conn: psycopg.Connection, table: str) -> tuple[int, int, int]:
    """Returns (dead rows, manual vacuums, manual analyzes) of ``table`` as PostgreSQL counts them."""
    row = conn.execute("SELECT n_dead_tup, vacuum_count, analyze_count FROM pg_stat_user_tables"
                       " WHERE relname = %s AND schemaname = current_schema()", (table,)).fetchone()
    assert row is not None
    return row


def _churn_an_agent(dsn: str, build: Builder, times: int) -> None:
    """Assigns and releases a kernel ``times`` times on one agent, a batch each (each batch writes the
    position and the agent's row again), on a connection that then closes (its statistics reach the
    server's)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        feeder = Feeder(conn)
        feeder.apply(build.registered("a1", cpu="8", mem="100"))
        for i in range(times):
            feeder.apply(build(ag.KernelAssigned, "a1", kernel_id=f"k{i}", session_id=f"s{i}", image="py",
                               slots=slots("1", "1")))
            feeder.apply(build(ag.KernelReleased, "a1", kernel_id=f"k{i}", session_id=f"s{i}"))


def test_tending_vacuums_and_analyzes_the_churned_tables_and_leaves_the_others(
    read_models: psycopg.Connection, pg_dsn: str, build: Builder,
) -> None:
    for table in ("projection_position", "agents", "domains"):  # whatever the server's autovacuum does
        read_models.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    _churn_an_agent(pg_dsn, build, 60)  # 121 batches: 121 dead versions of the position's row
    wait_for(lambda: _counts(read_models, "projection_position")[0] > FLOOR, timeout=30,
             message="PostgreSQL did not count the position's dead rows")
    tended = tend(read_models)
    assert "projection_position" in tended.vacuumed and "projection_position" in tended.analyzed
    assert "agents" in tended.analyzed  # 121 changes to its one row (HOT pruning may keep it from being due a vacuum)
    assert "domains" not in tended.vacuumed + tended.analyzed  # nothing changed there
    dead, vacuums, analyzes = _counts(read_models, "projection_position")
    assert vacuums == 1 and analyzes == 1 and dead < FLOOR
    assert _counts(read_models, "domains")[1:] == (0, 0)
    assert tend(read_models) == Tended([], [])  # nothing due any more
