"""Reads of the tenancy read models (``projections/tenancy.py``), narrowed to a ``TenancyScope``:
every domain and user (a superadmin), one domain (an admin), one user of it (a user).

Every list is ordered by name (keypairs by user, then access key); the narrowing conditions
are parameters, served by ``projects_domain``, ``users_domain``, ``keypairs_view_user`` and
``keypairs_view_domain``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from psycopg_pool import AsyncConnectionPool

from projections.queries.fetch import R, columns, fetch_all
from projections.queries.rows import DomainRow, KeypairRow, ProjectRow, ResourceGroupRow, ResourcePolicyRow, UserRow

__all__ = [
    "TenancyScope",
    "VISIBLE_TO_USER",
    "list_domains",
    "list_keypairs",
    "list_policies",
    "list_projects",
    "list_resource_groups",
    "list_users",
]


class TenancyScope(msgspec.Struct, frozen=True, kw_only=True):
    """How far a reader sees: ``domain`` None = every domain; ``user`` None = every user of it."""

    domain: str | None
    user: str | None
    access_key: str


Where = list[tuple[str, Any]]


async def _select(pool: AsyncConnectionPool, row_type: type[R], table: str, where: Where, order: str = "name") -> list[R]:
    clauses = [clause for clause, _ in where]
    params = [value for _, value in where]  # one placeholder per clause
    condition = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return await fetch_all(pool, row_type, f"SELECT {columns(row_type)} FROM {table} {condition} ORDER BY {order}", params)


def _narrow(where: Where, clause: str, value: Any) -> Where:
    return [*where, (clause, value)] if value is not None else where


async def list_domains(pool: AsyncConnectionPool, scope: TenancyScope) -> list[DomainRow]:
    """Returns the domains in scope (the reader's own unless it sees every domain)."""
    return await _select(pool, DomainRow, "domains", _narrow([], "name = %s", scope.domain))


async def list_projects(pool: AsyncConnectionPool, scope: TenancyScope, *, domain: str | None = None) -> list[ProjectRow]:
    """Returns the projects in scope (of ``domain`` when given): a user sees those it is a member of."""
    where = _narrow(_narrow([], "domain = %s", scope.domain), "domain = %s", domain)
    where = _narrow(where, "name = ANY(SELECT unnest(projects) FROM users WHERE name = %s)", scope.user)
    return await _select(pool, ProjectRow, "projects", where)


async def list_users(pool: AsyncConnectionPool, scope: TenancyScope, *, domain: str | None = None) -> list[UserRow]:
    """Returns the users in scope (of ``domain`` when given): a user sees itself."""
    where = _narrow(_narrow([], "domain = %s", scope.domain), "domain = %s", domain)
    return await _select(pool, UserRow, "users", _narrow(where, "name = %s", scope.user))


async def list_keypairs(pool: AsyncConnectionPool, scope: TenancyScope, *, user: str | None = None) -> list[KeypairRow]:
    """Returns the keypairs in scope (of ``user`` when given), never a secret: a user sees its own."""
    where = _narrow(_narrow([], "domain = %s", scope.domain), "user_name = %s", scope.user)
    return await _select(pool, KeypairRow, "keypairs_view", _narrow(where, "user_name = %s", user),
                         order="user_name, access_key")


async def list_policies(pool: AsyncConnectionPool, scope: TenancyScope) -> list[ResourcePolicyRow]:
    """Returns the resource policies: all for a domain's admins (to assign them), a user those of its keypairs."""
    where = _narrow([], "name IN (SELECT resource_policy FROM keypairs_view WHERE user_name = %s)", scope.user)
    return await _select(pool, ResourcePolicyRow, "resource_policies", where)


_VISIBLE_TO_DOMAIN = (
    "(is_public OR %s = ANY(visible_domains)"
    " OR visible_projects && ARRAY(SELECT name FROM projects WHERE domain = %s)"
    " OR visible_keypairs && ARRAY(SELECT access_key FROM keypairs_view WHERE domain = %s))"
)
VISIBLE_TO_USER = (  # a resource group (row) a user may use; parameters: its domain, its name twice
    "(is_public OR %s = ANY(visible_domains)"
    " OR visible_projects && ARRAY(SELECT unnest(projects) FROM users WHERE name = %s)"
    " OR visible_keypairs && ARRAY(SELECT access_key FROM keypairs_view WHERE user_name = %s))"
)


async def list_resource_groups(pool: AsyncConnectionPool, scope: TenancyScope) -> list[ResourceGroupRow]:
    """Returns the resource groups the reader may use (all when it sees every domain)."""
    if scope.domain is None:
        return await _select(pool, ResourceGroupRow, "resource_groups", [])
    select = f"SELECT {columns(ResourceGroupRow)} FROM resource_groups"
    if scope.user is None:
        return await fetch_all(pool, ResourceGroupRow, f"{select} WHERE {_VISIBLE_TO_DOMAIN} ORDER BY name",
                               [scope.domain] * 3)
    return await fetch_all(pool, ResourceGroupRow, f"{select} WHERE {VISIBLE_TO_USER} ORDER BY name",
                           [scope.domain, scope.user, scope.user])
