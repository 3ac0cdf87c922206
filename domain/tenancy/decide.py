"""Decisions of the tenancy aggregates: ``decide(state, command, ctx, aggregate_id, known)``.

A decision may depend on other aggregates (a project's domain must exist, a keypair's
user and policy too). ``references(command)`` names their ids; the use case loads them
and hands their states in ``known`` (None for a missing one), so the decision stays pure.
"""

from __future__ import annotations

from functools import singledispatch
from typing import Mapping, TypeVar

from contracts import tenancy as ev
from contracts import tenancy_commands as tc
from contracts.commands import Command
from contracts.envelope import Event
from contracts.subjects import SubjectError, check_token
from contracts.tenancy import KeypairLimits, ResourceGroupOptions, domain_id, policy_id, project_id, user_id
from domain.emitting import Context, Emitter
from domain.errors import AlreadyExistsError, InvalidRequestError, InvalidTransitionError, NotFoundError
from domain.tenancy.states import (
    DomainState,
    KeypairState,
    PolicyState,
    ProjectState,
    ResourceGroupState,
    TenancyState,
    UserState,
)
from domain.tenancy.values import apply_limits, apply_options, checked_name, checked_role, checked_slots

__all__ = ["Known", "decide", "references"]

Known = Mapping[str, TenancyState | None]
S = TypeVar("S", DomainState, ProjectState, UserState, KeypairState, PolicyState, ResourceGroupState)


def decide(state: TenancyState | None, command: Command, ctx: Context, aggregate_id: str, known: Known) -> list[Event]:
    """Returns the events that ``command`` causes; raises a ``DomainError`` when refused."""
    return _decide(command, state, ctx, aggregate_id, known)


def references(command: Command) -> tuple[str, ...]:
    """Returns the ids of the other aggregates that deciding ``command`` needs to know."""
    return _references(command)


# ---------------------------------------------------------------- references


@singledispatch
def _references(command: Command) -> tuple[str, ...]:
    return ()


@_references.register
def _(command: tc.CreateProject) -> tuple[str, ...]:
    return (domain_id(command.domain),)


@_references.register
def _(command: tc.CreateUser) -> tuple[str, ...]:
    return (domain_id(command.domain), *(project_id(p) for p in command.projects))


@_references.register
def _(command: tc.CreateKeypair) -> tuple[str, ...]:
    return (user_id(command.user), policy_id(command.resource_policy))


@_references.register
def _(command: tc.ChangeKeypairPolicy) -> tuple[str, ...]:
    return (policy_id(command.resource_policy),)


@_references.register(tc.CreateResourceGroup)
@_references.register(tc.UpdateResourceGroup)
def _(command: tc.CreateResourceGroup | tc.UpdateResourceGroup) -> tuple[str, ...]:
    options = command.options
    return (
        *(domain_id(d) for d in options.domains or ()),
        *(project_id(p) for p in options.projects or ()),
        *(options.keypairs or ()),
    )


# ---------------------------------------------------------------- helpers


def _new(state: TenancyState | None, what: str, name: str) -> None:
    if state is not None:
        raise AlreadyExistsError(f"{what} {name} already exists")


def _existing(state: TenancyState | None, cls: type[S], what: str, aggregate_id: str) -> S:
    if not isinstance(state, cls):
        raise NotFoundError(f"{what} {_display(aggregate_id)} not found")
    return state


def _display(aggregate_id: str) -> str:
    """Returns the name inside a prefixed aggregate id (``domain_ml`` -> ``ml``); an access key as is."""
    kind, sep, name = aggregate_id.partition("_")
    return name if sep and kind in _KINDS else aggregate_id


_KINDS = frozenset({"domain", "project", "user", "policy", "rgroup"})


def _referenced(known: Known, aggregate_id: str, cls: type[S], what: str, name: str) -> S:
    state = known.get(aggregate_id)
    if not isinstance(state, cls):
        raise InvalidRequestError(f"{what} {name} does not exist")
    return state


def _emit(aggregate_id: str, state: TenancyState | None, ctx: Context) -> Emitter:
    return Emitter(aggregate_id, 0 if state is None else state.version, ctx)


@singledispatch
def _decide(command: Command, state: TenancyState | None, ctx: Context, aggregate_id: str, known: Known) -> list[Event]:
    raise TypeError(f"tenancy aggregates cannot handle {type(command).__name__}")


# ---------------------------------------------------------------- domains and projects


@_decide.register
def _(command: tc.CreateDomain, state: TenancyState | None, ctx: Context, aggregate_id: str, known: Known) -> list[Event]:
    name = checked_name(command.name, "domain name")
    _new(state, "domain", name)
    slots = checked_slots(command.total_resource_slots, "total_resource_slots")
    return [_emit(aggregate_id, state, ctx)(
        ev.DomainCreated, name=name, description=command.description, total_resource_slots=slots)]


@_decide.register
def _(command: tc.UpdateDomain, state: TenancyState | None, ctx: Context, aggregate_id: str, known: Known) -> list[Event]:
    domain = _existing(state, DomainState, "domain", aggregate_id)
    slots = checked_slots(command.total_resource_slots, "total_resource_slots")
    if slots == domain.total_resource_slots:
        return []
    return [_emit(aggregate_id, domain, ctx)(ev.DomainUpdated, total_resource_slots=slots)]


@_decide.register
def _(command: tc.CreateProject, state: TenancyState | None, ctx: Context, aggregate_id: str, known: Known) -> list[Event]:
    name = checked_name(command.name, "project name")
    checked_name(command.domain, "domain name")
    _new(state, "project", name)
    slots = checked_slots(command.total_resource_slots, "total_resource_slots")
    _referenced(known, domain_id(command.domain), DomainState, "domain", command.domain)
    return [_emit(aggregate_id, state, ctx)(
        ev.ProjectCreated, name=name, domain=command.domain, description=command.description,
        total_resource_slots=slots,
    )]


@_decide.register
def _(command: tc.UpdateProject, state: TenancyState | None, ctx: Context, aggregate_id: str, known: Known) -> list[Event]:
    project = _existing(state, ProjectState, "project", aggregate_id)
    slots = checked_slots(command.total_resource_slots, "total_resource_slots")
    if slots == project.total_resource_slots:
        return []
    return [_emit(aggregate_id, project, ctx)(ev.ProjectUpdated, total_resource_slots=slots)]


# ---------------------------------------------------------------- users and keypairs


@_decide.register
def _(command: tc.CreateUser, state: TenancyState | None, ctx: Context, aggregate_id: str, known: Known) -> list[Event]:
    name = checked_name(command.name, "user name")
    checked_name(command.domain, "domain name")
    projects = list(dict.fromkeys(checked_name(p, "project name") for p in command.projects))
    role = checked_role(command.role)
    _new(state, "user", name)
    _referenced(known, domain_id(command.domain), DomainState, "domain", command.domain)
    for project_name in projects:
        project = _referenced(known, project_id(project_name), ProjectState, "project", project_name)
        if project.domain != command.domain:
            raise InvalidRequestError(
                f"project {project_name} belongs to domain {project.domain}, not to {command.domain}")
    return [_emit(aggregate_id, state, ctx)(ev.UserCreated, name=name, domain=command.domain, role=role, projects=projects)]


@_decide.register
def _(command: tc.DeactivateUser, state: TenancyState | None, ctx: Context, aggregate_id: str, known: Known) -> list[Event]:
    user = _existing(state, UserState, "user", aggregate_id)
    if not user.is_active:
        raise InvalidTransitionError(f"user {user.name} is already inactive")
    return [_emit(aggregate_id, user, ctx)(ev.UserDeactivated)]


@_decide.register
def _(command: tc.CreateKeypair, state: TenancyState | None, ctx: Context, aggregate_id: str, known: Known) -> list[Event]:
    try:
        check_token(aggregate_id, "access key")
    except SubjectError as exc:
        raise InvalidRequestError(str(exc)) from exc
    checked_name(command.user, "user name")
    checked_name(command.resource_policy, "resource policy name")
    _new(state, "keypair", aggregate_id)
    user = _referenced(known, user_id(command.user), UserState, "user", command.user)
    if not user.is_active:
        raise InvalidRequestError(f"user {user.name} is inactive")
    _referenced(known, policy_id(command.resource_policy), PolicyState, "resource policy", command.resource_policy)
    return [_emit(aggregate_id, state, ctx)(
        ev.KeypairCreated, user=user.name, role=user.role, domain=user.domain, resource_policy=command.resource_policy)]


@_decide.register
def _(command: tc.DeactivateKeypair, state: TenancyState | None, ctx: Context, aggregate_id: str, known: Known) -> list[Event]:
    keypair = _existing(state, KeypairState, "keypair", aggregate_id)
    if not keypair.is_active:
        raise InvalidTransitionError(f"keypair {aggregate_id} is already inactive")
    return [_emit(aggregate_id, keypair, ctx)(ev.KeypairDeactivated)]


@_decide.register
def _(command: tc.ChangeKeypairPolicy, state: TenancyState | None, ctx: Context, aggregate_id: str, known: Known) -> list[Event]:
    keypair = _existing(state, KeypairState, "keypair", aggregate_id)
    name = checked_name(command.resource_policy, "resource policy name")
    _referenced(known, policy_id(name), PolicyState, "resource policy", name)
    if name == keypair.resource_policy:
        return []
    return [_emit(aggregate_id, keypair, ctx)(ev.KeypairPolicyChanged, resource_policy=name)]


# ---------------------------------------------------------------- policies and resource groups


@_decide.register
def _(command: tc.CreateResourcePolicy, state: TenancyState | None, ctx: Context, aggregate_id: str, known: Known) -> list[Event]:
    name = checked_name(command.name, "resource policy name")
    _new(state, "resource policy", name)
    limits = apply_limits(KeypairLimits(), command.limits)
    return [_emit(aggregate_id, state, ctx)(ev.ResourcePolicyCreated, name=name, limits=limits)]


@_decide.register
def _(command: tc.UpdateResourcePolicy, state: TenancyState | None, ctx: Context, aggregate_id: str, known: Known) -> list[Event]:
    policy = _existing(state, PolicyState, "resource policy", aggregate_id)
    limits = apply_limits(policy.limits, command.limits)
    if limits == policy.limits:
        return []
    return [_emit(aggregate_id, policy, ctx)(ev.ResourcePolicyUpdated, limits=limits)]


def _check_visibility(options: ResourceGroupOptions, change: tc.GroupOptionsChange, known: Known) -> None:
    """Refuses a visibility list that names a domain, project or keypair that does not exist."""
    visibility = options.visibility
    for name in visibility.domains if change.domains is not None else ():
        _referenced(known, domain_id(name), DomainState, "domain", name)
    for name in visibility.projects if change.projects is not None else ():
        _referenced(known, project_id(name), ProjectState, "project", name)
    for name in visibility.keypairs if change.keypairs is not None else ():
        _referenced(known, name, KeypairState, "keypair", name)


@_decide.register
def _(command: tc.CreateResourceGroup, state: TenancyState | None, ctx: Context, aggregate_id: str, known: Known) -> list[Event]:
    name = checked_name(command.name, "resource group name")
    _new(state, "resource group", name)
    options = apply_options(ResourceGroupOptions(), command.options)
    _check_visibility(options, command.options, known)
    return [_emit(aggregate_id, state, ctx)(
        ev.ResourceGroupCreated, name=name, description=command.description, options=options)]


@_decide.register
def _(command: tc.UpdateResourceGroup, state: TenancyState | None, ctx: Context, aggregate_id: str, known: Known) -> list[Event]:
    group = _existing(state, ResourceGroupState, "resource group", aggregate_id)
    options = apply_options(group.options, command.options)
    _check_visibility(options, command.options, known)
    if options == group.options:
        return []
    return [_emit(aggregate_id, group, ctx)(ev.ResourceGroupUpdated, options=options)]
