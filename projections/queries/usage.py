"""Reads of quota usage (``quota_usage``) next to each scope's limit (the tenancy read models):
a keypair's resource policy, a project's or a domain's ``total_resource_slots``.

``UsageScope`` narrows it: everything, one domain's scopes (an admin's: none of its superadmins' keypairs;
its projects' and the domain's sums count their sessions, as the quotas do), or one user's own (its keypair,
its projects, its domain). Served by ``quota_usage_scope_name`` and the tenancy primary keys.
"""

from __future__ import annotations

import msgspec
from psycopg_pool import AsyncConnectionPool

from contracts.tenancy import Role
from projections.queries.fetch import fetch_all
from projections.queries.rows import QuotaUsageRow

__all__ = ["UsageScope", "quota_usage"]

_USAGE = """
SELECT q.scope, q.name, q.slots, q.session_count,
       CASE q.scope WHEN 'keypair' THEN p.total_resource_slots
                    WHEN 'project' THEN pr.total_resource_slots
                    ELSE d.total_resource_slots END AS limit_slots,
       p.max_concurrent_sessions
  FROM quota_usage q
  LEFT JOIN keypairs_view k ON q.scope = 'keypair' AND k.access_key = q.name
  LEFT JOIN resource_policies p ON p.name = k.resource_policy
  LEFT JOIN projects pr ON q.scope = 'project' AND pr.name = q.name
  LEFT JOIN domains d ON q.scope = 'domain' AND d.name = q.name
 WHERE {where}
 ORDER BY q.scope, q.name
"""

_MINE = """(q.scope = 'keypair' AND q.name = %(key)s)
        OR (q.scope = 'project' AND q.name = ANY(SELECT unnest(projects) FROM users WHERE name = %(user)s))
        OR (q.scope = 'domain' AND q.name = %(domain)s)"""
_DOMAIN = """(q.scope = 'keypair' AND k.domain = %(domain)s AND k.role <> %(hidden)s)
          OR (q.scope = 'project' AND pr.domain = %(domain)s)
          OR (q.scope = 'domain' AND q.name = %(domain)s)"""


class UsageScope(msgspec.Struct, frozen=True, kw_only=True):
    """Which quota scopes a reader sees: ``everything``; else with ``user`` None every scope of
    ``domain`` but its superadmins' keypairs; else ``user``'s own: keypair ``access_key``, its projects
    and ``domain``."""

    everything: bool
    domain: str
    user: str | None
    access_key: str


async def quota_usage(pool: AsyncConnectionPool, scope: UsageScope) -> list[QuotaUsageRow]:
    """Returns the quota usage rows in ``scope`` with their limits, by scope kind and name."""
    params = {"key": scope.access_key, "user": scope.user, "domain": scope.domain, "hidden": Role.SUPERADMIN.value}
    where = "true" if scope.everything else _DOMAIN if scope.user is None else _MINE
    return await fetch_all(pool, QuotaUsageRow, _USAGE.format(where=where), params)
