"""The doctor's read: the rows its consistency checks compare, in ONE repeatable-read snapshot
(``read_snapshot``), so that the read models are seen as one batch of the projector left them."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import msgspec
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from projections.queries.fetch import missing

__all__ = ["HealthSnapshot", "read_snapshot"]

_QUERIES = {
    "sessions": "SELECT session_id, status, owner, project, domain, requested_slots, "
                "status_history->>status AS status_since, updated_at FROM sessions WHERE status = ANY(%s)",
    "kernels": "SELECT kernel_id, agent_id, status, slots FROM kernels WHERE agent_id IS NOT NULL",
    "agents": "SELECT agent_id, occupied, allocations FROM agents",
    "quotas": "SELECT q.scope, q.name, q.slots, COALESCE((SELECT jsonb_object_agg(s.session_id, s.slots)"
              " FROM quota_usage_sessions s WHERE s.quota_id = q.quota_id), '{}'::jsonb) AS sessions"
              " FROM quota_usage q",
}


class HealthSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The rows, as mappings: ``sessions`` holding resources (id, status, owner, project, domain,
    requested_slots, status_since: when it entered its status, updated_at: its last event), placed ``kernels`` (id, agent, status, slots), ``agents`` (id, occupied,
    allocations) and ``quotas`` (scope, name, slots, sessions)."""

    sessions: list[dict[str, Any]]
    kernels: list[dict[str, Any]]
    agents: list[dict[str, Any]]
    quotas: list[dict[str, Any]]


async def read_snapshot(pool: AsyncConnectionPool, holding: Collection[str]) -> HealthSnapshot:
    """Returns the rows the checks need (sessions in the ``holding`` statuses), read in one
    repeatable-read, read-only transaction."""
    statuses = sorted(holding)
    try:
        async with pool.connection() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur = conn.cursor(row_factory=dict_row)
            rows = {}
            for name, query in _QUERIES.items():
                await cur.execute(query, (statuses,) if name == "sessions" else ())
                rows[name] = await cur.fetchall()
            return HealthSnapshot(**rows)
    except psycopg.errors.UndefinedTable as exc:
        raise missing(exc) from exc
