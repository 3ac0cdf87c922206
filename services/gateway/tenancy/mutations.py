"""Tenancy mutations: create and update domains, projects, users, keypairs, resource policies and
resource groups. Who may do what is ``tenancy_access``'s rule; a refused mutation records nothing.
Each returns the event-store position of its last event (pass it as ``afterPosition``)."""

from __future__ import annotations

import strawberry

from contracts import tenancy_commands as tc
from contracts.tenancy import DEFAULT_DOMAIN, DEFAULT_POLICY, DEFAULT_PROJECT, Role, domain_id, policy_id, project_id, rgroup_id, user_id
from domain.tenancy import KeypairState, ProjectState, UserState
from services.application.context import make_context
from services.gateway.auth import keypairs
from services.gateway.auth.principal import Principal
from services.gateway.context import Info
from services.gateway.errors import BAD_INPUT, FORBIDDEN, GatewayError
from contracts.limits import CHOICE, Many, Text
from contracts.vfolder import VolumePermission
from services.gateway.limits import ACCESS_KEY, checked, checked_name, checked_value
from services.gateway.slots import SlotInput
from services.gateway.tenancy.access import (
    admin_caller, checked_input, guarded, in_scope, load, raw_slots, run_command, superadmin_caller,
    unless_superadmin_target,
)
from services.gateway.tenancy.types import (
    DomainInput, KeypairSecret, ProjectInput, ResourceGroupInput, ResourcePolicyInput, TenancyResult, UserInput,
    VolumeHostInput,
)

__all__ = ["TenancyMutation"]


def _limits(data: ResourcePolicyInput) -> tc.LimitsChange:
    return tc.LimitsChange(
        total_resource_slots=raw_slots(data.total_resource_slots, "totalResourceSlots"),
        max_concurrent_sessions=data.max_concurrent_sessions,
        max_pending_session_count=data.max_pending_session_count,
        max_pending_session_resource_slots=raw_slots(
            data.max_pending_session_resource_slots, "maxPendingSessionResourceSlots"),
        max_containers_per_session=data.max_containers_per_session,
        idle_timeout=data.idle_timeout,
        max_session_lifetime=data.max_session_lifetime,
        rate_limit=data.rate_limit,
        max_concurrent_subscriptions=data.max_concurrent_subscriptions,
        max_vfolder_count=data.max_vfolder_count,
        max_quota_scope_size=_whole(data.max_quota_scope_size, "maxQuotaScopeSize"),
        allowed_vfolder_hosts=None if data.allowed_vfolder_hosts is None else _hosts(data.allowed_vfolder_hosts),
    )


def _whole(value: float | None, what: str) -> int | None:
    """Returns a float input that must be a whole number >= 0 as an int (None stays None)."""
    if value is None:
        return None
    if value != value or value < 0 or value != int(value):
        raise GatewayError(BAD_INPUT, f"{what} is a whole number >= 0")
    return int(value)


def _hosts(items: list[VolumeHostInput]) -> dict[str, list[str]]:
    checked_value(Many("allowedVfolderHosts", 64), items)
    hosts: dict[str, list[str]] = {}
    for item in items:
        checked_name("allowedVfolderHosts.volume", item.volume)
        checked_value(Many("allowedVfolderHosts.permissions", len(VolumePermission),
                           each=Text("allowedVfolderHosts.permissions entry", CHOICE)), item.permissions)
        if item.volume in hosts:
            raise GatewayError(BAD_INPUT, f"allowedVfolderHosts: volume {item.volume!r} given twice")
        hosts[item.volume] = list(item.permissions)
    return hosts


def _quota(items: list[SlotInput] | None) -> dict[str, str]:
    """Returns the new quota of an update; BAD_INPUT when none is given ([] removes the quota)."""
    slots = raw_slots(items, "totalResourceSlots")
    if slots is None:
        raise GatewayError(BAD_INPUT, "nothing to update: give totalResourceSlots ([] removes the quota)")
    return slots


def _options(data: ResourceGroupInput) -> tc.GroupOptionsChange:
    return tc.GroupOptionsChange(
        scheduler=data.scheduler, agent_selection=data.agent_selection,
        allowed_session_types=data.allowed_session_types, pending_timeout=data.pending_timeout, public=data.public,
        domains=data.domains, projects=data.projects, keypairs=data.keypairs,
    )


async def _keypair_in_scope(info: Info, access_key: str, what: str) -> tuple[Principal, KeypairState]:
    checked_value(ACCESS_KEY, access_key)
    principal = admin_caller(info, what)
    keypair = in_scope(principal, await load(info, access_key), KeypairState, "keypair", access_key)
    unless_superadmin_target(principal, keypair.role, what)
    return principal, keypair


async def _unless_lifting_a_policy(info: Info, principal: Principal, user: str) -> None:
    """Refuses (FORBIDDEN) a domain admin a new keypair of ``user`` when a superadmin assigned any keypair of
    theirs (deactivated ones too) another policy than the default: the new one would get the default and lift
    it (a restricted admin would issue itself an unrestricted keypair). Read from the event store, never stale."""
    if principal.is_superadmin:
        return
    resources = info.context.resources
    keys = await keypairs.access_keys_of(resources.pool, user)
    states = await resources.call(resources.tenancy.get_many, keys) if keys else {}
    assigned = sorted({s.resource_policy for s in states.values() if isinstance(s, KeypairState)} - {DEFAULT_POLICY})
    if assigned:
        raise GatewayError(FORBIDDEN, f"only a superadmin may issue keypairs of user {user}: a superadmin assigned "
                                      f"resource policy {', '.join(map(repr, assigned))} to their keypairs, which a "
                                      f"new keypair (policy {DEFAULT_POLICY!r}) would lift")


@strawberry.type
class TenancyMutation:
    @strawberry.mutation(description="Creates a domain (superadmin).")
    async def create_domain(self, info: Info, input: DomainInput) -> TenancyResult:
        checked_input(input)
        principal = superadmin_caller(info, "create domains")
        command = tc.CreateDomain(name=input.name, description=input.description,
                                  total_resource_slots=raw_slots(input.total_resource_slots, "totalResourceSlots") or {})
        return TenancyResult(id=input.name, position=await run_command(info, principal, domain_id(input.name), command))

    @strawberry.mutation(description="Sets a domain's quota, totalResourceSlots (superadmin).")
    async def update_domain(self, info: Info, input: DomainInput) -> TenancyResult:
        checked_input(input)
        principal = superadmin_caller(info, "update domains")
        command = tc.UpdateDomain(total_resource_slots=_quota(input.total_resource_slots))
        return TenancyResult(id=input.name, position=await run_command(info, principal, domain_id(input.name), command))

    @strawberry.mutation(description="Creates a project in a domain (its admin or a superadmin).")
    async def create_project(self, info: Info, input: ProjectInput) -> TenancyResult:
        checked_input(input)
        principal = admin_caller(info, "create projects")
        domain = input.domain or principal.domain
        if not principal.manages(domain):
            raise GatewayError(FORBIDDEN, f"you may not create projects in domain {domain}")
        command = tc.CreateProject(name=input.name, domain=domain, description=input.description,
                                   total_resource_slots=raw_slots(input.total_resource_slots, "totalResourceSlots") or {})
        return TenancyResult(id=input.name, position=await run_command(info, principal, project_id(input.name), command))

    @strawberry.mutation(description="Sets a project's quota, totalResourceSlots (its domain's admin or a superadmin).")
    async def update_project(self, info: Info, input: ProjectInput) -> TenancyResult:
        checked_input(input)
        principal = admin_caller(info, "update projects")
        in_scope(principal, await load(info, project_id(input.name)), ProjectState, "project", input.name)
        command = tc.UpdateProject(total_resource_slots=_quota(input.total_resource_slots))
        return TenancyResult(id=input.name, position=await run_command(info, principal, project_id(input.name), command))

    @strawberry.mutation(description="Creates a user in a domain (its admin or a superadmin; only a superadmin "
                         "creates superadmins).")
    async def create_user(self, info: Info, input: UserInput) -> TenancyResult:
        checked_input(input)
        principal = admin_caller(info, "create users")
        domain = input.domain or principal.domain
        if not principal.manages(domain):
            raise GatewayError(FORBIDDEN, f"you may not create users in domain {domain}")
        if input.role.strip().lower() == Role.SUPERADMIN.value and not principal.is_superadmin:
            raise GatewayError(FORBIDDEN, "only a superadmin may create superadmins")
        projects = input.projects if input.projects is not None else (
            [DEFAULT_PROJECT] if domain == DEFAULT_DOMAIN else [])
        command = tc.CreateUser(name=input.name, domain=domain, role=input.role, projects=projects)
        return TenancyResult(id=input.name, position=await run_command(info, principal, user_id(input.name), command))

    @strawberry.mutation(description="Deactivates a user and all its keypairs (they stop authenticating).")
    async def deactivate_user(self, info: Info, name: str) -> TenancyResult:
        checked_name("name", name)
        principal = admin_caller(info, "deactivate users")
        user = in_scope(principal, await load(info, user_id(name)), UserState, "user", name)
        unless_superadmin_target(principal, user.role, "deactivate the user")
        if name == principal.user_id:
            raise GatewayError(BAD_INPUT, "you cannot deactivate yourself")
        resources = info.context.resources
        position = await guarded(info, keypairs.deactivate_user, resources.tenancy, resources.settings.pg_dsn, name,
                                 make_context(principal.access_key))
        return TenancyResult(id=name, position=position)

    @strawberry.mutation(description="Creates a keypair for a user (its domain's admin, for a user whose keypairs all "
                         "hold the default policy, or a superadmin); the secret key is returned this once.")
    async def create_keypair(self, info: Info, user: str, resource_policy: str = "default") -> KeypairSecret:
        principal = admin_caller(info, "create keypairs")
        if resource_policy != DEFAULT_POLICY and not principal.is_superadmin:
            raise GatewayError(FORBIDDEN, f"only a superadmin may assign resource policies (a domain admin's keypairs "
                                          f"get {DEFAULT_POLICY!r})")
        checked(tc.CreateKeypair(user=user, resource_policy=resource_policy))
        owner = in_scope(principal, await load(info, user_id(user)), UserState, "user", user)
        unless_superadmin_target(principal, owner.role, "create a keypair")
        await _unless_lifting_a_policy(info, principal, user)
        resources = info.context.resources
        access_key, secret_key, position = await guarded(
            info, lambda: keypairs.issue_keypair(resources.tenancy, resources.settings.pg_dsn, user,
                                                 make_context(principal.access_key), resource_policy=resource_policy))
        return KeypairSecret(access_key=access_key, secret_key=secret_key, position=position)

    @strawberry.mutation(description="Deactivates a keypair: it no longer authenticates.")
    async def deactivate_keypair(self, info: Info, access_key: str) -> TenancyResult:
        principal, _ = await _keypair_in_scope(info, access_key, "deactivate the keypair")
        resources = info.context.resources
        position = await guarded(info, keypairs.deactivate_keypair, resources.tenancy, resources.settings.pg_dsn,
                                 access_key, make_context(principal.access_key))
        return TenancyResult(id=access_key, position=position)

    @strawberry.mutation(description="Assigns a resource policy to a keypair (superadmin: a domain admin must not lift "
                         "the limits a superadmin set, its own included).")
    async def set_keypair_policy(self, info: Info, access_key: str, resource_policy: str) -> TenancyResult:
        superadmin_caller(info, "assign resource policies")
        command = checked(tc.ChangeKeypairPolicy(resource_policy=resource_policy))
        principal, _ = await _keypair_in_scope(info, access_key, "change the policy")
        return TenancyResult(id=access_key, position=await run_command(info, principal, access_key, command))

    @strawberry.mutation(description="Creates a keypair resource policy (superadmin).")
    async def create_resource_policy(self, info: Info, input: ResourcePolicyInput) -> TenancyResult:
        checked_input(input)
        principal = superadmin_caller(info, "create resource policies")
        command = tc.CreateResourcePolicy(name=input.name, limits=_limits(input))
        return TenancyResult(id=input.name, position=await run_command(info, principal, policy_id(input.name), command))

    @strawberry.mutation(description="Changes the given limits of a resource policy (superadmin).")
    async def update_resource_policy(self, info: Info, input: ResourcePolicyInput) -> TenancyResult:
        checked_input(input)
        principal = superadmin_caller(info, "update resource policies")
        command = tc.UpdateResourcePolicy(limits=_limits(input))
        return TenancyResult(id=input.name, position=await run_command(info, principal, policy_id(input.name), command))

    @strawberry.mutation(description="Creates a resource group (superadmin).")
    async def create_resource_group(self, info: Info, input: ResourceGroupInput) -> TenancyResult:
        checked_input(input)
        principal = superadmin_caller(info, "create resource groups")
        command = tc.CreateResourceGroup(name=input.name, description=input.description, options=_options(input))
        return TenancyResult(id=input.name, position=await run_command(info, principal, rgroup_id(input.name), command))

    @strawberry.mutation(description="Changes the given options of a resource group (superadmin).")
    async def update_resource_group(self, info: Info, input: ResourceGroupInput) -> TenancyResult:
        checked_input(input)
        principal = superadmin_caller(info, "update resource groups")
        command = tc.UpdateResourceGroup(options=_options(input))
        return TenancyResult(id=input.name, position=await run_command(info, principal, rgroup_id(input.name), command))
