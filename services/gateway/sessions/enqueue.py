"""Enqueue-time validation of ``createSession`` (Backend.AI's enqueue validators), before anything
is recorded: project membership, the resource group (exists, visible, allows the type), the
caller's resource policy (containers per session, pending sessions and their slots),
dependencies (each an id, a unique id prefix or a name of a session the caller may see; stored
as ids), designated agents (admins only) and folder mounts (``services.gateway.sessions.mounts``). The name's uniqueness is checked where the session
is recorded, in the same transaction (``Sessions.request(..., unique_name=True)``).

Tenancy facts come from the event store (never stale: a user created a moment ago may
create a session at once); the pending sessions of the keypair come from the ``sessions``
read model, counted in the keypair's turn when its policy limits them
(``services.gateway.pending_gate``): once the read models reached the event store's position, the
turn held until the request is recorded. The pure checks live in ``domain.tenancy.enqueue``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal

import msgspec

from contracts import commands as c
from contracts.session import DEFAULT_PRIORITY
from contracts.slots import stored_slots, sum_slots
from contracts.tenancy import DEFAULT_POLICY, DEFAULT_RESOURCE_GROUP, KeypairLimits, policy_id, project_id, rgroup_id, user_id
from domain.errors import DomainError
from domain.session import MAX_PRIORITY
from domain.tenancy import KeypairState, PolicyState, ProjectState, ResourceGroupState, UserState
from domain.tenancy.enqueue import EnqueueFacts, check_enqueue, choose_project
from domain.vfolder_mounts import MountRequest
from services.application.tenancy import Tenancy
from services.gateway.auth.principal import Principal
from services.gateway.context import Info
from services.gateway.errors import BAD_INPUT, FORBIDDEN, NOT_FOUND, GatewayError, from_domain
from services.gateway.readmodels import read_caught_up
from services.gateway.sessions import readmodels as rm
from services.gateway.sessions.mounts import actor_of, resolved_mounts
from services.gateway.sessions.refs import resolve_session_id

__all__ = ["enqueued"]


class _Loaded(msgspec.Struct, frozen=True, kw_only=True):
    user: UserState | None
    project_name: str
    project: ProjectState | None
    group: ResourceGroupState | None
    limits: KeypairLimits


def _load(tenancy: Tenancy, principal: Principal, project: str | None, group: str) -> _Loaded:
    """Loads the tenancy facts of one request (runs on the store's threads), never stale: ONE read
    when the cached user and keypair name the same project and policy as their caught-up states
    (the usual case), a second one for what they name otherwise."""
    user_key, keypair_key, group_key = user_id(principal.user_id), principal.access_key, rgroup_id(group)
    try:
        guesses: tuple[str, ...] = _keys(*_named(tenancy.cached(user_key), tenancy.cached(keypair_key), project))
    except DomainError:  # the cached user may be behind: decided on the caught-up one below
        guesses = ()
    found = tenancy.get_many([user_key, keypair_key, group_key, *guesses])
    user = found[user_key] if isinstance(found[user_key], UserState) else None
    project_name, policy_name = _named(user, found[keypair_key], project)
    project_key, policy_key = _keys(project_name, policy_name)
    missing = [key for key in (project_key, policy_key) if key not in found]
    if missing:
        found |= tenancy.get_many(missing)
    policy, found_project, found_group = found[policy_key], found[project_key], found[group_key]
    return _Loaded(
        user=user, project_name=project_name,
        project=found_project if isinstance(found_project, ProjectState) else None,
        group=found_group if isinstance(found_group, ResourceGroupState) else None,
        limits=policy.limits if isinstance(policy, PolicyState) else KeypairLimits(),
    )


def _named(user: object, keypair: object, project: str | None) -> tuple[str, str]:
    """The names of the project and the policy a request uses, by its user and keypair."""
    user = user if isinstance(user, UserState) else None
    policy_name = keypair.resource_policy if isinstance(keypair, KeypairState) else DEFAULT_POLICY
    return choose_project(user, project), policy_name


def _keys(project_name: str, policy_name: str) -> tuple[str, str]:
    return project_id(project_name), policy_id(policy_name)


def _limits_pending(limits: KeypairLimits) -> bool:
    return bool(limits.max_pending_session_count or limits.max_pending_session_resource_slots)


async def _pending(info: Info, limits: KeypairLimits, owner: str) -> tuple[int, dict[str, Decimal]]:
    """Returns how many sessions ``owner`` has pending and their slots, as of the event store's position
    (every request recorded before is counted); nothing when ``limits`` do not limit them."""
    if not _limits_pending(limits):
        return 0, {}
    resources = info.context.resources
    count, slots = await read_caught_up(resources, rm.pending_of, resources.pool, owner)
    return count, sum_slots(stored_slots(s) for s in slots)


async def _resolved_dependencies(info: Info, dependencies: list[str]) -> list[str]:
    """Returns the ids of the dependencies (each an id, a unique id prefix or a name of a session the
    caller may see), without repeats; BAD_INPUT (or AMBIGUOUS) when one names no such session."""
    resolved: list[str] = []
    for dependency in dependencies:
        try:
            resolved.append(await resolve_session_id(info, dependency, "dependency session id"))
        except GatewayError as exc:
            if exc.code != NOT_FOUND:
                raise
            raise GatewayError(BAD_INPUT, f"dependency {dependency}: no such session of yours") from None
    return list(dict.fromkeys(resolved))


@contextlib.asynccontextmanager
async def enqueued(info: Info, principal: Principal, command: c.RequestSession, project: str | None,
                   resource_group: str | None, mounts: Sequence[MountRequest] = ()) -> AsyncIterator[c.RequestSession]:
    """Yields ``command`` with the caller's user, domain, project, resource group and resolved ``mounts``
    filled in, once every enqueue check passed, to be recorded in the ``with`` block: a keypair whose
    policy limits its pending sessions holds its turn until the block ends (``services.gateway.pending_gate``),
    so that no other request of it is counted before this one is recorded. Raises a GraphQL error
    (BAD_INPUT, QUOTA, FORBIDDEN; READ_MODEL_BEHIND when the pending sessions cannot be counted yet) otherwise."""
    spec = command.spec
    if spec.designated_agents and not principal.is_admin:
        raise GatewayError(FORBIDDEN, "only admins may designate agents")
    if DEFAULT_PRIORITY < spec.priority <= MAX_PRIORITY and not principal.is_admin:  # out of range: BAD_INPUT later
        raise GatewayError(FORBIDDEN, f"only admins may ask for a priority above {DEFAULT_PRIORITY} (the default); "
                                      f"got {spec.priority}")
    resources = info.context.resources
    group = resource_group or DEFAULT_RESOURCE_GROUP
    try:
        loaded = await resources.call(_load, resources.tenancy, principal, project, group)
    except DomainError as exc:
        raise from_domain(exc) from exc
    if not _limits_pending(loaded.limits):
        yield await _checked(info, principal, command, loaded, group, mounts)
        return
    async with resources.pending_gate.turn(principal.access_key):
        yield await _checked(info, principal, command, loaded, group, mounts)


async def _checked(info: Info, principal: Principal, command: c.RequestSession, loaded: _Loaded, group: str,
                   mounts: Sequence[MountRequest]) -> c.RequestSession:
    """Returns ``command`` completed, once the checks that need the tenancy facts ``loaded`` passed
    (see ``enqueued``)."""
    spec = command.spec
    try:
        pending_count, pending_slots = await _pending(info, loaded.limits, principal.access_key)
        check_enqueue(EnqueueFacts(
            access_key=principal.access_key, domain=principal.domain, privileged=principal.is_admin,
            user=loaded.user, project_name=loaded.project_name, project=loaded.project, group_name=group,
            group=loaded.group, session_type=spec.session_type, cluster_size=len(spec.kernels),
            requested_slots=sum_slots(k.slots for k in spec.kernels), limits=loaded.limits,
            pending_count=pending_count, pending_slots=pending_slots,
        ))
        resolved = await resolved_mounts(info, actor_of(principal, loaded.user, loaded.limits), list(mounts),
                                         loaded.project_name)
    except DomainError as exc:
        raise from_domain(exc) from exc
    dependencies = await _resolved_dependencies(info, spec.dependencies)
    return msgspec.structs.replace(command, spec=msgspec.structs.replace(
        spec, user=principal.user_id, domain=principal.domain, project=loaded.project_name, resource_group=group,
        dependencies=dependencies, mounts=resolved))
