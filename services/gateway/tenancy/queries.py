"""Tenancy queries: domains, projects, users, keypairs, resource policies and resource groups,
read from the read models and narrowed to what the caller may see (``readmodels.scope_of``):
a superadmin sees everything, an admin its domain (of its superadmins only the users: no keypair, nor a policy
or resource group only they hold), a user itself."""

from __future__ import annotations

import strawberry

from services.gateway.tenancy import readmodels as trm
from services.gateway.context import Info, caller
from services.gateway.limits import checked_name
from services.gateway.readmodels import AfterPosition, await_position
from services.gateway.tenancy.types import Domain, Keypair, Project, ResourceGroup, ResourcePolicy, User

__all__ = ["TenancyQuery"]


async def _scope(info: Info, after_position: int | None) -> trm.TenancyScope:
    scope = trm.scope_of(caller(info))
    await await_position(info, after_position)
    return scope


@strawberry.type
class TenancyQuery:
    @strawberry.field(description="Domains: all for superadmins, else the caller's own.")
    async def domains(self, info: Info, after_position: AfterPosition = None) -> list[Domain]:
        scope = await _scope(info, after_position)
        return [Domain.from_row(row) for row in await trm.list_domains(info.context.resources.pool, scope)]

    @strawberry.field(description="Projects: all for superadmins, the domain's for admins, a user's own.")
    async def projects(self, info: Info, domain: str | None = None, after_position: AfterPosition = None) -> list[Project]:
        checked_name("domain", domain)
        scope = await _scope(info, after_position)
        rows = await trm.list_projects(info.context.resources.pool, scope, domain=domain)
        return [Project.from_row(row) for row in rows]

    @strawberry.field(description="Users: all for superadmins, the domain's for admins (its superadmins too: "
                                   "not what they hold), a user itself.")
    async def users(self, info: Info, domain: str | None = None, after_position: AfterPosition = None) -> list[User]:
        checked_name("domain", domain)
        scope = await _scope(info, after_position)
        return [User.from_row(row) for row in await trm.list_users(info.context.resources.pool, scope, domain=domain)]

    @strawberry.field(description="Keypairs without secrets: all for superadmins, the domain's but its superadmins' "
                                   "for admins, a user's own.")
    async def keypairs(self, info: Info, user: str | None = None, after_position: AfterPosition = None) -> list[Keypair]:
        checked_name("user", user)
        scope = await _scope(info, after_position)
        rows = await trm.list_keypairs(info.context.resources.pool, scope, user=user)
        return [Keypair.from_row(row) for row in rows]

    @strawberry.field(description="Keypair resource policies: all for superadmins; for admins the default one and "
                                   "those of their domain's keypairs but its superadmins'; a user's keypairs'.")
    async def resource_policies(self, info: Info, after_position: AfterPosition = None) -> list[ResourcePolicy]:
        scope = await _scope(info, after_position)
        return [ResourcePolicy.from_row(row) for row in await trm.list_policies(info.context.resources.pool, scope)]

    @strawberry.field(description="Resource groups the caller may use (all for superadmins); their domains, projects "
                                   "and keypairs only those the caller may list.")
    async def resource_groups(self, info: Info, after_position: AfterPosition = None) -> list[ResourceGroup]:
        scope = await _scope(info, after_position)
        rows = await trm.list_resource_groups(info.context.resources.pool, scope)
        return [ResourceGroup.from_row(row) for row in rows]
