"""The tenancy feature's reads, no SQL: the query functions of ``projections.queries.tenancy``
(a missing read model is UNAVAILABLE), narrowed to what a caller may see: a superadmin
everything, an admin its domain but its superadmins' keypairs, a user itself (``scope_of``)."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from projections.queries import tenancy as q
from projections.queries.rows import DomainRow, KeypairRow, ProjectRow, ResourceGroupRow, ResourcePolicyRow, UserRow
from projections.queries.tenancy import TenancyScope
from services.gateway.auth.principal import Principal
from services.gateway.readmodels import read

__all__ = [
    "TenancyScope",
    "list_domains",
    "list_keypairs",
    "list_policies",
    "list_projects",
    "list_resource_groups",
    "list_users",
    "scope_of",
]


def scope_of(principal: Principal) -> TenancyScope:
    """Returns how far a caller sees."""
    if principal.is_superadmin:
        return TenancyScope(domain=None, user=None, access_key=principal.access_key)
    if principal.is_admin:
        return TenancyScope(domain=principal.domain, user=None, access_key=principal.access_key)
    return TenancyScope(domain=principal.domain, user=principal.user_id, access_key=principal.access_key)


async def list_domains(pool: AsyncConnectionPool, scope: TenancyScope) -> list[DomainRow]:
    """Returns the domains in scope (the caller's own unless superadmin)."""
    return await read(q.list_domains, pool, scope)


async def list_projects(pool: AsyncConnectionPool, scope: TenancyScope, *, domain: str | None = None) -> list[ProjectRow]:
    """Returns the projects in scope: a user sees those it is a member of."""
    return await read(q.list_projects, pool, scope, domain=domain)


async def list_users(pool: AsyncConnectionPool, scope: TenancyScope, *, domain: str | None = None) -> list[UserRow]:
    """Returns the users in scope: a user sees itself."""
    return await read(q.list_users, pool, scope, domain=domain)


async def list_keypairs(pool: AsyncConnectionPool, scope: TenancyScope, *, user: str | None = None) -> list[KeypairRow]:
    """Returns the keypairs in scope (never a secret): a user sees its own."""
    return await read(q.list_keypairs, pool, scope, user=user)


async def list_policies(pool: AsyncConnectionPool, scope: TenancyScope) -> list[ResourcePolicyRow]:
    """Returns the resource policies in scope: a superadmin all, an admin the default and its domain's keypairs'
    (but its superadmins'), a user its keypairs'."""
    return await read(q.list_policies, pool, scope)


async def list_resource_groups(pool: AsyncConnectionPool, scope: TenancyScope) -> list[ResourceGroupRow]:
    """Returns the resource groups the caller may use (all for a superadmin)."""
    return await read(q.list_resource_groups, pool, scope)
