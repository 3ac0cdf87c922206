"""Upkeep of the read models: ``VACUUM`` and ``ANALYZE`` of the tables whose rows the projector churns,
as soon as enough of them are dead or changed, whatever the server's autovacuum does.

Every batch rewrites rows: an agent's tallied row and the position with an ``UPDATE`` each, and a bulk
batch's preloaded sessions, kernels and quota rows deleted and copied back whole. Each leaves a dead
version behind (and, for a row copied back, an entry in every index of the table) until a ``VACUUM``
removes it; until then every lookup of the row walks them. PostgreSQL's autovacuum may be off (as on
the development machine: ``autovacuum = off``) or far behind (by default it visits a database once a
minute and waits for a fifth of a table to be dead). Then each operation cost more the older the
platform was: under ``bench_api.py`` (16 clients, rounds of 500 sessions) PostgreSQL's CPU per session
rose from 3.7 to 5.6 ms in ten rounds, and the projector's lookup of a batch's kernels from 0.8 to
2.7 ms in six. ``ANALYZE`` keeps the planner's statistics as current as the tables (autovacuum also
analyzes; off, nothing does).

``due(stats)`` says which tables need what (pure); ``tend(conn)`` reads the statistics and does it,
``SKIP_LOCKED`` (a table locked meanwhile, by an index build or autovacuum, waits for the next time).
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

import psycopg
from psycopg import sql

from projections.schema import TABLES

__all__ = ["ANALYZE_SHARE", "DEAD_SHARE", "FLOOR", "TableStats", "Tended", "due", "tend"]

FLOOR = 50
"""Dead (or changed) rows a table may hold before any upkeep, however small it is (autovacuum's own
threshold): a table of ten agents is vacuumed once about fifty versions are dead."""
DEAD_SHARE = 0.1
"""And the share of its live rows that may be dead (half of autovacuum's default)."""
ANALYZE_SHARE = 0.1
"""The share of its live rows that may have changed since the last ``ANALYZE`` (autovacuum's default)."""

_STATS = (
    "SELECT relname, n_live_tup, n_dead_tup, n_mod_since_analyze FROM pg_stat_user_tables"
    " WHERE schemaname = current_schema() AND relname = ANY(%s) ORDER BY relname"
)


class TableStats(NamedTuple):
    """What PostgreSQL counts of one table (``pg_stat_user_tables``)."""

    table: str
    live: int
    dead: int
    changed: int
    """Rows inserted, updated or deleted since the table was last analyzed."""


class Tended(NamedTuple):
    """What one ``tend`` did: the tables vacuumed, and those analyzed."""

    vacuumed: list[str]
    analyzed: list[str]


def due(stats: Iterable[TableStats]) -> Tended:
    """Returns the tables to vacuum (``FLOOR`` + ``DEAD_SHARE`` of their live rows dead, or more) and those
    to analyze (``FLOOR`` + ``ANALYZE_SHARE`` changed since the last ``ANALYZE``, or more)."""
    vacuum: list[str] = []
    analyze: list[str] = []
    for table in stats:
        if table.dead >= FLOOR + DEAD_SHARE * table.live:
            vacuum.append(table.table)
        if table.changed >= FLOOR + ANALYZE_SHARE * table.live:
            analyze.append(table.table)
    return Tended(vacuum, analyze)


def tend(conn: psycopg.Connection, tables: Iterable[str] = TABLES) -> Tended:
    """Vacuums and analyzes those of ``tables`` (the read models by default) that are ``due``, on ``conn``
    (autocommit: ``VACUUM`` runs outside any transaction); returns what it did. A table vacuumed and
    due for ``ANALYZE`` gets both in one pass."""
    found = [TableStats(*row) for row in conn.execute(_STATS, (list(tables),)).fetchall()]
    todo = due(found)
    for command, names in (
        ("VACUUM (ANALYZE, SKIP_LOCKED)", [table for table in todo.vacuumed if table in todo.analyzed]),
        ("VACUUM (SKIP_LOCKED)", [table for table in todo.vacuumed if table not in todo.analyzed]),
        ("ANALYZE (SKIP_LOCKED)", [table for table in todo.analyzed if table not in todo.vacuumed]),
    ):
        if names:
            conn.execute(sql.SQL(command + " {}").format(sql.SQL(", ").join(map(sql.Identifier, names))))
    return todo
