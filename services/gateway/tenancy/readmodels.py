"""SQL reads of the tenancy read models (``projections/tenancy.py``), narrowed to what a caller
may see: a superadmin everything, an admin its domain, a user itself.

``Scope`` says how far a caller sees; every list is ordered by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from services.gateway.auth.principal import Principal
from services.gateway.readmodels import Row, fetch_rows

__all__ = [
    "Scope",
    "list_domains",
    "list_keypairs",
    "list_policies",
    "list_projects",
    "list_resource_groups",
    "list_users",
]


@dataclass(frozen=True, slots=True)
class Scope:
    """How far a caller sees: ``domain`` None = every domain; ``user`` None = every user of it."""

    domain: str | None
    user: str | None
    access_key: str

    @staticmethod
    def of(principal: Principal) -> Scope:
        """Returns the scope of a caller."""
        if principal.is_superadmin:
            return Scope(domain=None, user=None, access_key=principal.access_key)
        if principal.is_admin:
            return Scope(domain=principal.domain, user=None, access_key=principal.access_key)
        return Scope(domain=principal.domain, user=principal.user_id, access_key=principal.access_key)


async def _select(pool: AsyncConnectionPool, table: str, where: list[tuple[str, Any]], order: str = "name") -> list[Row]:
    clauses = [clause for clause, _ in where]
    params = [value for _, value in where]  # one placeholder per clause
    condition = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return await fetch_rows(pool, f"SELECT * FROM {table} {condition} ORDER BY {order}", params)


def _narrow(where: list[tuple[str, Any]], clause: str, value: Any) -> list[tuple[str, Any]]:
    return [*where, (clause, value)] if value is not None else where


async def list_domains(pool: AsyncConnectionPool, scope: Scope) -> list[Row]:
    """Returns the domains in scope (the caller's own unless superadmin)."""
    return await _select(pool, "domains", _narrow([], "name = %s", scope.domain))


async def list_projects(pool: AsyncConnectionPool, scope: Scope, *, domain: str | None = None) -> list[Row]:
    """Returns the projects in scope: a user sees those it is a member of."""
    where = _narrow(_narrow([], "domain = %s", scope.domain), "domain = %s", domain)
    where = _narrow(where, "name = ANY(SELECT unnest(projects) FROM users WHERE name = %s)", scope.user)
    return await _select(pool, "projects", where)


async def list_users(pool: AsyncConnectionPool, scope: Scope, *, domain: str | None = None) -> list[Row]:
    """Returns the users in scope: a user sees itself."""
    where = _narrow(_narrow([], "domain = %s", scope.domain), "domain = %s", domain)
    return await _select(pool, "users", _narrow(where, "name = %s", scope.user))


async def list_keypairs(pool: AsyncConnectionPool, scope: Scope, *, user: str | None = None) -> list[Row]:
    """Returns the keypairs in scope (never a secret): a user sees its own."""
    where = _narrow(_narrow([], "domain = %s", scope.domain), "user_name = %s", scope.user)
    return await _select(pool, "keypairs_view", _narrow(where, "user_name = %s", user), order="user_name, access_key")


async def list_policies(pool: AsyncConnectionPool, scope: Scope) -> list[Row]:
    """Returns the resource policies: admins see all (to assign them), a user those of its keypairs."""
    where = _narrow([], "name IN (SELECT resource_policy FROM keypairs_view WHERE user_name = %s)", scope.user)
    return await _select(pool, "resource_policies", where)


_VISIBLE_TO_DOMAIN = (
    "(is_public OR %s = ANY(visible_domains)"
    " OR visible_projects && ARRAY(SELECT name FROM projects WHERE domain = %s)"
    " OR visible_keypairs && ARRAY(SELECT access_key FROM keypairs_view WHERE domain = %s))"
)
_VISIBLE_TO_USER = (
    "(is_public OR %s = ANY(visible_domains)"
    " OR visible_projects && ARRAY(SELECT unnest(projects) FROM users WHERE name = %s)"
    " OR visible_keypairs && ARRAY(SELECT access_key FROM keypairs_view WHERE user_name = %s))"
)


async def list_resource_groups(pool: AsyncConnectionPool, scope: Scope) -> list[Row]:
    """Returns the resource groups the caller may use (all for a superadmin)."""
    if scope.domain is None:
        return await _select(pool, "resource_groups", [])
    if scope.user is None:
        return await fetch_rows(
            pool, f"SELECT * FROM resource_groups WHERE {_VISIBLE_TO_DOMAIN} ORDER BY name", [scope.domain] * 3)
    return await fetch_rows(
        pool, f"SELECT * FROM resource_groups WHERE {_VISIBLE_TO_USER} ORDER BY name",
        [scope.domain, scope.user, scope.user])
