"""Query ``quotaUsage``: what each quota scope holds now, next to its limit.

A user sees its keypair, its projects and its domain; an admin every scope of its domain but its
superadmins' keypairs (the domain's and its projects' sums count their sessions: they are the domain's
quotas); a superadmin all. Read from the ``quota_usage`` read model and the tenancy read models by
``projections.queries.usage.quota_usage``.
"""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON

from projections.queries.rows import QuotaUsageRow
from projections.queries.usage import UsageScope, quota_usage
from services.gateway.readmodels import read
from services.gateway.auth.principal import Principal
from services.gateway.context import Info, caller
from services.gateway.slots import slots_json

__all__ = ["QuotaUsage", "UsageQuery", "usage_scope"]


@strawberry.type(description="What one quota scope (keypair, project or domain) holds, next to its limit.")
class QuotaUsage:
    scope: str = strawberry.field(description="keypair, project or domain.")
    name: str = strawberry.field(description="The access key, project or domain name.")
    used: JSON = strawberry.field(description="Slots held by the sessions that occupy resources.")
    sessions: int = strawberry.field(description="Sessions holding slots.")
    limit: JSON = strawberry.field(description="total_resource_slots; a slot absent is unlimited.")
    max_sessions: int | None = strawberry.field(description="A keypair's max_concurrent_sessions (0: no limit).")

    @staticmethod
    def from_row(row: QuotaUsageRow) -> QuotaUsage:
        """Returns the usage of one quota scope from its row."""
        return QuotaUsage(
            scope=row.scope, name=row.name, used=slots_json(row.slots), sessions=row.session_count,
            limit=slots_json(row.limit_slots or {}), max_sessions=row.max_concurrent_sessions,
        )


def usage_scope(principal: Principal) -> UsageScope:
    """Returns the quota scopes a caller sees: all (superadmin), its domain's (admin), its own (user)."""
    return UsageScope(everything=principal.is_superadmin, domain=principal.domain,
                      user=None if principal.is_admin else principal.user_id, access_key=principal.access_key)


@strawberry.type
class UsageQuery:
    @strawberry.field(description="Quota usage and limits: yours (users), your domain's but its superadmins' "
                                "keypairs (admins) or all (superadmins).")
    async def quota_usage(self, info: Info) -> list[QuotaUsage]:
        rows = await read(quota_usage, info.context.resources.pool, usage_scope(caller(info)))
        return [QuotaUsage.from_row(row) for row in rows]
