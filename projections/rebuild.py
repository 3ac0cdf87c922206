"""Rebuilding the read models: drop and recreate the tables; the projector then replays the
EVENTS stream from sequence 1. Rows take every value from events, so a rebuild gives
identical tables (``dump_read_models`` compares them).

A bulk rebuild (``reset_read_models(conn, bulk=True)``) also leaves out the secondary
indexes (neither unique nor primary: nothing the replay needs), so that the replay does
not maintain them row by row; ``create_secondary_indexes`` puts them back in one pass each,
over two connections at once, at the end of the rebuild or, if it was interrupted,
``create_schema`` whenever a projector (re)connects."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg import sql

from projections.position import POSITION_CHANNEL, RESET
from projections.schema import execute_beside_others, recreate_schema, secondary_index_statements

__all__ = [
    "PRIMARY_KEYS",
    "create_secondary_indexes",
    "dump_read_models",
    "reset_read_models",
    "secondary_index_statements",
    "secondary_indexes",
]

PRIMARY_KEYS = {
    "sessions": "session_id",
    "kernels": "kernel_id",
    "agents": "agent_id",
    "event_log": "position",
    "quota_usage": "quota_id",
    "quota_usage_sessions": ("quota_id", "session_id"),
    "domains": "name",
    "projects": "name",
    "users": "name",
    "keypairs_view": "access_key",
    "resource_policies": "name",
    "resource_groups": "name",
    "vfolders": "folder_id",
    "vfolder_shares": ("folder_id", "user_name"),
    "vfolder_invitations": "invitation_id",
    "vfolder_scope_limits": "quota_scope",
}
"""The read-model tables (the position table aside) and the key (column or columns) their dumps are
ordered by: every table of ``projections.schema.TABLES`` but ``projection_position``."""


_SECONDARY = """
SELECT i.relname FROM pg_index x
  JOIN pg_class i ON i.oid = x.indexrelid
  JOIN pg_class t ON t.oid = x.indrelid
 WHERE t.relname = ANY(%s) AND t.relnamespace = to_regnamespace(current_schema()) AND NOT x.indisunique
 ORDER BY 1
"""


def reset_read_models(conn: psycopg.Connection, *, bulk: bool = False) -> None:
    """Drops and recreates every read-model table and the position (back to zero), atomically, and
    notifies ``POSITION_CHANNEL`` with ``RESET`` on commit (waiters must not trust older positions).
    With ``bulk``, the new tables have no secondary index until ``create_schema`` runs again."""
    with conn.transaction():
        recreate_schema(conn, secondary_indexes=not bulk)
        conn.execute("SELECT pg_notify(%s, %s)", (POSITION_CHANNEL, RESET))


def secondary_indexes(conn: psycopg.Connection) -> list[str]:
    """Returns the names of the read models' indexes that are neither unique nor primary."""
    return [name for (name,) in conn.execute(_SECONDARY, (list(PRIMARY_KEYS),)).fetchall()]


def create_secondary_indexes(conn: psycopg.Connection, other: psycopg.Connection) -> None:
    """Creates the secondary indexes that are missing, half of them on ``conn`` and half on ``other``
    (autocommit connections to the same database) at once: PostgreSQL builds an index of tables this
    size with one process, and the two builds take a table's lock in shared mode, so they overlap. A
    projector creating the schema meanwhile (``create_schema``, at its connection) waits, or is waited
    for (``execute_beside_others``)."""
    statements = secondary_index_statements()
    with ThreadPoolExecutor(1, thread_name_prefix="indexes") as pool:
        elsewhere = pool.submit(execute_beside_others, other, statements[1::2])
        execute_beside_others(conn, statements[::2])
        elsewhere.result()


def dump_read_models(conn: psycopg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Returns every row of every read model, as text, ordered by primary key."""
    dumps: dict[str, list[tuple[Any, ...]]] = {}
    for table, key in PRIMARY_KEYS.items():
        columns = (key,) if isinstance(key, str) else key
        query = sql.SQL("SELECT t::text FROM {} AS t ORDER BY {}").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
        dumps[table] = conn.execute(query).fetchall()
    return dumps
