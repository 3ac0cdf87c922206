"""Creates, drops and recreates the read-model tables described in ``schema.sql``."""

from __future__ import annotations

import re
from importlib import resources
from typing import Sequence

import psycopg
from psycopg import sql

__all__ = ["TABLES", "create_schema", "drop_schema", "execute_beside_others", "recreate_schema", "schema_sql",
           "secondary_index_statements"]

TABLES = ("sessions", "kernels", "agents", "event_log", "projection_position", "quota_usage",
          "quota_usage_sessions",
          "domains", "projects", "users", "keypairs_view", "resource_policies", "resource_groups",
          "vfolders", "vfolder_shares", "vfolder_invitations", "vfolder_scope_limits")
"""Every table of the read models, the position table included."""

_LOCK = "SELECT pg_advisory_xact_lock(hashtext('berth.projections.schema'))"
_BESIDE_OTHERS = sql.SQL(
    "SET LOCAL synchronous_commit = off; SELECT pg_advisory_xact_lock_shared(hashtext('berth.projections.schema'));"
    " SELECT pg_advisory_xact_lock(hashtext('berth.projections.schema'), hashtext({})); ")
"""What each statement of ``execute_beside_others`` runs first, in its transaction (the statement's text
as the literal)."""


_CREATE_INDEX = re.compile(r"^CREATE INDEX IF NOT EXISTS \w+ ON [^;]+;", re.MULTILINE)


def schema_sql() -> str:
    """Returns the DDL of the read models (``projections/schema.sql``)."""
    return resources.files("projections").joinpath("schema.sql").read_text(encoding="utf-8")


def secondary_index_statements() -> list[str]:
    """Returns the DDL of the secondary indexes, one ``CREATE INDEX IF NOT EXISTS`` each, in the
    order of ``schema.sql`` (where every index that is neither unique nor primary is written so)."""
    return _CREATE_INDEX.findall(schema_sql())


def create_schema(conn: psycopg.Connection) -> None:
    """Creates the read-model tables that are missing, in one transaction.

    An advisory lock serialises concurrent creators (two services starting at once).
    """
    with conn.transaction():
        conn.execute(_LOCK)
        conn.execute(schema_sql())


def execute_beside_others(conn: psycopg.Connection, statements: Sequence[str]) -> None:
    """Runs DDL statements of the schema (``CREATE ... IF NOT EXISTS``) on ``conn`` (autocommit), each in
    a transaction of its own that holds the schema's lock in shared mode, so that other connections
    doing the same run at once while ``create_schema`` and ``recreate_schema`` wait, and a lock on the
    statement, so that no two connections make one object at once (PostgreSQL's ``IF NOT EXISTS`` does
    not see an object another transaction is still creating: the second then fails on the catalog's
    key). Each goes as one string (one round trip, the implicit transaction of a multi-statement
    query) and commits without waiting for its WAL to be flushed: a crash can lose only objects that
    ``create_schema`` makes again, whenever a projector connects."""
    for statement in statements:
        conn.execute(_BESIDE_OTHERS.format(sql.Literal(statement)) + sql.SQL(statement))  # type: ignore[arg-type]


def drop_schema(conn: psycopg.Connection) -> None:
    """Drops every read-model table, the position table included, in one transaction."""
    with conn.transaction():
        conn.execute(_LOCK)
        conn.execute("DROP TABLE IF EXISTS " + ", ".join(TABLES))


def recreate_schema(conn: psycopg.Connection, *, secondary_indexes: bool = True) -> None:
    """Drops and creates the read models in one transaction: readers see either the old
    tables or the new empty ones, never a missing table. Without ``secondary_indexes``, the
    tables come without the indexes of ``secondary_index_statements``. The DDL goes in one
    statement string: one round trip."""
    ddl = schema_sql() if secondary_indexes else _CREATE_INDEX.sub("", schema_sql())
    with conn.transaction():
        conn.execute(f"{_LOCK};\nDROP TABLE IF EXISTS {', '.join(TABLES)};\n{ddl}")  # type: ignore[call-overload]
