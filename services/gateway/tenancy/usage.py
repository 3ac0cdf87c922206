"""Query ``quotaUsage``: what each quota scope holds now, next to its limit.

A user sees its keypair, its projects and its domain; an admin every scope of its domain;
a superadmin all. Read from the ``quota_usage`` read model and the tenancy read models.
"""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON

from services.gateway import readmodels as rm
from services.gateway.auth.principal import Principal
from services.gateway.context import Info, caller
from services.gateway.slots import slots_json

__all__ = ["QuotaUsage", "UsageQuery"]

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
_DOMAIN = """(q.scope = 'keypair' AND k.domain = %(domain)s)
          OR (q.scope = 'project' AND pr.domain = %(domain)s)
          OR (q.scope = 'domain' AND q.name = %(domain)s)"""


@strawberry.type(description="What one quota scope (keypair, project or domain) holds, next to its limit.")
class QuotaUsage:
    scope: str = strawberry.field(description="keypair, project or domain.")
    name: str = strawberry.field(description="The access key, project or domain name.")
    used: JSON = strawberry.field(description="Slots held by the sessions that occupy resources.")
    sessions: int = strawberry.field(description="Sessions holding slots.")
    limit: JSON = strawberry.field(description="total_resource_slots; a slot absent is unlimited.")
    max_sessions: int | None = strawberry.field(description="A keypair's max_concurrent_sessions (0: no limit).")

    @staticmethod
    def from_row(row: dict[str, Any]) -> QuotaUsage:
        return QuotaUsage(
            scope=row["scope"], name=row["name"], used=slots_json(row["slots"]), sessions=row["session_count"],
            limit=slots_json(row["limit_slots"] or {}), max_sessions=row["max_concurrent_sessions"],
        )


def _where(principal: Principal) -> tuple[str, dict[str, str]]:
    params = {"key": principal.access_key, "user": principal.user_id, "domain": principal.domain}
    if principal.is_superadmin:
        return "true", params
    return (_DOMAIN if principal.is_admin else _MINE), params


@strawberry.type
class UsageQuery:
    @strawberry.field(description="Quota usage and limits: yours (users), your domain's (admins) or all (superadmins).")
    async def quota_usage(self, info: Info) -> list[QuotaUsage]:
        where, params = _where(caller(info))
        rows = await rm.fetch_rows(info.context.resources.pool, _USAGE.format(where=where), params)
        return [QuotaUsage.from_row(row) for row in rows]
