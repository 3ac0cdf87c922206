"""Reads of the tenancy read models (``projections/tenancy.py``), narrowed to a ``TenancyScope``:
every domain and user (a superadmin), one domain but its superadmins' keypairs (an admin: no admin reads
what is a superadmin's), one user of it (a user).

Every list is ordered by name (keypairs by user, then access key); the narrowing conditions
are parameters, served by ``projects_domain``, ``users_domain``, ``keypairs_view_user`` and
``keypairs_view_domain``. A resource group's ``visible_projects`` and ``visible_keypairs`` are narrowed to the
projects and keypairs the reader's scope lists, its ``visible_domains`` to the reader's domain.
"""

from __future__ import annotations

from typing import Any

import msgspec
from psycopg_pool import AsyncConnectionPool

from contracts.tenancy import DEFAULT_POLICY, Role
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
    """How far a reader sees: ``domain`` None = every domain; ``user`` None = every user of it (an admin's scope:
    its superadmins' keypairs aside, ``hides_superadmins``)."""

    domain: str | None
    user: str | None
    access_key: str

    @property
    def hides_superadmins(self) -> bool:
        """Returns True for a domain admin's scope: its domain's users, none of its superadmins' keypairs."""
        return self.domain is not None and self.user is None


Where = list[tuple[str, Any]]
HIDDEN_ROLE = Role.SUPERADMIN.value
"""The role of the keypairs an admin's scope does not read."""


async def _select(pool: AsyncConnectionPool, row_type: type[R], table: str, where: Where, order: str = "name") -> list[R]:
    query, params = _subquery(columns(row_type), table, where)
    return await fetch_all(pool, row_type, f"{query} ORDER BY {order}", params)


def _params(where: Where) -> list[Any]:
    """Returns the parameters of the conditions ``where``: one value per clause, a tuple of values for a clause with
    several placeholders."""
    return [param for _, value in where for param in (value if isinstance(value, tuple) else (value,))]


def _narrow(where: Where, clause: str, value: Any) -> Where:
    return [*where, (clause, value)] if value is not None else where


async def list_domains(pool: AsyncConnectionPool, scope: TenancyScope) -> list[DomainRow]:
    """Returns the domains in scope (the reader's own unless it sees every domain)."""
    return await _select(pool, DomainRow, "domains", _narrow([], "name = %s", scope.domain))


async def list_projects(pool: AsyncConnectionPool, scope: TenancyScope, *, domain: str | None = None) -> list[ProjectRow]:
    """Returns the projects in scope (of ``domain`` when given): a user sees those it is a member of."""
    return await _select(pool, ProjectRow, "projects", _narrow(_projects_in(scope), "domain = %s", domain))


async def list_users(pool: AsyncConnectionPool, scope: TenancyScope, *, domain: str | None = None) -> list[UserRow]:
    """Returns the users in scope (of ``domain`` when given): a user sees itself."""
    where = _narrow(_narrow([], "domain = %s", scope.domain), "domain = %s", domain)
    return await _select(pool, UserRow, "users", _narrow(where, "name = %s", scope.user))


def _keypairs_in(scope: TenancyScope) -> Where:
    """Returns the conditions on ``keypairs_view`` of the keypairs in scope: a user's own, an admin's domain's but
    its superadmins'."""
    where = _narrow(_narrow([], "domain = %s", scope.domain), "user_name = %s", scope.user)
    return _narrow(where, "role <> %s", HIDDEN_ROLE if scope.hides_superadmins else None)


def _projects_in(scope: TenancyScope) -> Where:
    """Returns the conditions on ``projects`` of the projects in scope: a user's own, an admin's domain's."""
    where = _narrow([], "domain = %s", scope.domain)
    return _narrow(where, "name = ANY(SELECT unnest(projects) FROM users WHERE name = %s)", scope.user)


def _subquery(column: str, table: str, where: Where) -> tuple[str, list[Any]]:
    """Returns ``SELECT column FROM table WHERE ...`` of the conditions ``where``, and its parameters."""
    condition = f" WHERE {' AND '.join(clause for clause, _ in where)}" if where else ""
    return f"SELECT {column} FROM {table}{condition}", _params(where)


async def list_keypairs(pool: AsyncConnectionPool, scope: TenancyScope, *, user: str | None = None) -> list[KeypairRow]:
    """Returns the keypairs in scope (of ``user`` when given), never a secret: a user sees its own, an admin its
    domain's but its superadmins'."""
    return await _select(pool, KeypairRow, "keypairs_view", _narrow(_keypairs_in(scope), "user_name = %s", user),
                         order="user_name, access_key")


async def list_policies(pool: AsyncConnectionPool, scope: TenancyScope) -> list[ResourcePolicyRow]:
    """Returns the resource policies in scope: all for a superadmin; for an admin the default one (which it issues
    keypairs with) and those of its domain's keypairs but its superadmins'; for a user those of its keypairs."""
    if scope.domain is None:
        return await _select(pool, ResourcePolicyRow, "resource_policies", [])
    held, params = _subquery("resource_policy", "keypairs_view", _keypairs_in(scope))
    if scope.user is not None:
        return await _select(pool, ResourcePolicyRow, "resource_policies", [(f"name IN ({held})", tuple(params))])
    where = [(f"(name = %s OR name IN ({held}))", (DEFAULT_POLICY, *params))]
    return await _select(pool, ResourcePolicyRow, "resource_policies", where)


_VISIBLE_TO_DOMAIN = (  # a resource group (row) an admin sees; parameters: its domain, the keypairs' subquery's
    "(is_public OR %s = ANY(visible_domains)"
    " OR visible_projects && ARRAY(SELECT name FROM projects WHERE domain = %s)"
    " OR visible_keypairs && ARRAY({keypairs}))"
)
VISIBLE_TO_USER = (  # a resource group (row) a user may use; parameters: its domain, its name twice
    "(is_public OR %s = ANY(visible_domains)"
    " OR visible_projects && ARRAY(SELECT unnest(projects) FROM users WHERE name = %s)"
    " OR visible_keypairs && ARRAY(SELECT access_key FROM keypairs_view WHERE user_name = %s))"
)
_GROUP_LISTS = ("visible_domains", "visible_projects", "visible_keypairs")


def _narrowed_group(scope: TenancyScope) -> tuple[str, list[Any]]:
    """Returns the select list of a resource group whose domains, projects and keypairs are narrowed to the
    reader's domain and to the projects and keypairs its scope lists, and its parameters."""
    projects, project_params = _subquery("name", "projects", _projects_in(scope))
    keypairs, keypair_params = _subquery("access_key", "keypairs_view", _keypairs_in(scope))
    kept = ", ".join(name for name in ResourceGroupRow.__struct_fields__ if name not in _GROUP_LISTS)
    select = (f"{kept}, ARRAY(SELECT d FROM unnest(visible_domains) d WHERE d = %s) AS visible_domains,"
              f" ARRAY(SELECT p FROM unnest(visible_projects) p WHERE p IN ({projects})) AS visible_projects,"
              f" ARRAY(SELECT k FROM unnest(visible_keypairs) k WHERE k IN ({keypairs})) AS visible_keypairs")
    return select, [scope.domain, *project_params, *keypair_params]


async def list_resource_groups(pool: AsyncConnectionPool, scope: TenancyScope) -> list[ResourceGroupRow]:
    """Returns the resource groups the reader may use (all when it sees every domain); for a user or an admin, each
    with only what it sees of the domains, projects and keypairs the group is visible to (an admin: none of its
    superadmins' keypairs, nor a group only they may use)."""
    if scope.domain is None:
        return await _select(pool, ResourceGroupRow, "resource_groups", [])
    select, params = _narrowed_group(scope)
    if scope.user is None:
        keypairs, keypair_params = _subquery("access_key", "keypairs_view", _keypairs_in(scope))
        visible, visible_params = _VISIBLE_TO_DOMAIN.format(keypairs=keypairs), [scope.domain] * 2 + keypair_params
    else:
        visible, visible_params = VISIBLE_TO_USER, [scope.domain, scope.user, scope.user]
    return await fetch_all(pool, ResourceGroupRow,
                           f"SELECT {select} FROM resource_groups WHERE {visible} ORDER BY name",
                           [*params, *visible_params])
