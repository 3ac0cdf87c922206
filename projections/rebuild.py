"""Rebuilding the read models: drop and recreate the tables; the projector then replays the
EVENTS stream from sequence 1. Rows take every value from events, so a rebuild gives
identical tables (``dump_read_models`` compares them)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from projections.position import POSITION_CHANNEL, RESET
from projections.schema import recreate_schema

__all__ = ["PRIMARY_KEYS", "dump_read_models", "reset_read_models"]

PRIMARY_KEYS = {
    "sessions": "session_id",
    "kernels": "kernel_id",
    "agents": "agent_id",
    "event_log": "position",
    "quota_usage": "quota_id",
    "domains": "name",
    "projects": "name",
    "users": "name",
    "keypairs_view": "access_key",
    "resource_policies": "name",
    "resource_groups": "name",
}
"""The read-model tables (the position table aside) and the key their dumps are ordered by."""


def reset_read_models(conn: psycopg.Connection) -> None:
    """Drops and recreates every read-model table and the position (back to zero), atomically, and
    notifies ``POSITION_CHANNEL`` with ``RESET`` on commit (waiters must not trust older positions)."""
    with conn.transaction():
        recreate_schema(conn)
        conn.execute("SELECT pg_notify(%s, %s)", (POSITION_CHANNEL, RESET))


def dump_read_models(conn: psycopg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Returns every row of every read model, as text, ordered by primary key."""
    dumps: dict[str, list[tuple[Any, ...]]] = {}
    for table, key in PRIMARY_KEYS.items():
        query = sql.SQL("SELECT t::text FROM {} AS t ORDER BY {}").format(sql.Identifier(table), sql.Identifier(key))
        dumps[table] = conn.execute(query).fetchall()
    return dumps
