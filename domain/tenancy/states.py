"""States of the tenancy aggregates and ``evolve``: Domain, Project, User, Keypair,
ResourcePolicy and ResourceGroup.

Each aggregate starts with its ``*Created`` event; every later event replaces what
it carries and moves the version.
"""

from __future__ import annotations

from decimal import Decimal
from functools import singledispatch
from typing import Union

import msgspec

from contracts import tenancy as ev
from contracts.envelope import Event
from contracts.tenancy import KeypairLimits, ResourceGroupOptions, Role

__all__ = [
    "DomainState",
    "KeypairState",
    "PolicyState",
    "ProjectState",
    "ResourceGroupState",
    "TenancyState",
    "UserState",
    "evolve",
    "replay",
]


class DomainState(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    version: int
    name: str
    description: str
    total_resource_slots: dict[str, Decimal]


class ProjectState(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    version: int
    name: str
    domain: str
    description: str
    total_resource_slots: dict[str, Decimal]
    max_quota_scope_size: int = 0
    """Bytes the project's folders may hold together (0: no limit)."""


class UserState(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    version: int
    name: str
    domain: str
    role: Role
    projects: tuple[str, ...]
    is_active: bool = True


class KeypairState(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    """The access key."""
    version: int
    user: str
    role: Role
    domain: str
    resource_policy: str
    is_active: bool = True


class PolicyState(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    version: int
    name: str
    limits: KeypairLimits


class ResourceGroupState(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    version: int
    name: str
    description: str
    options: ResourceGroupOptions


TenancyState = Union[DomainState, ProjectState, UserState, KeypairState, PolicyState, ResourceGroupState]


def evolve(state: TenancyState | None, event: Event) -> TenancyState:
    """Returns the state after ``event``."""
    return _apply(event, state)


def replay(events: list[Event]) -> TenancyState | None:
    """Returns the state after all ``events`` (None when there are none)."""
    state: TenancyState | None = None
    for event in events:
        state = evolve(state, event)
    return state


@singledispatch
def _apply(event: Event, state: TenancyState | None) -> TenancyState:
    raise TypeError(f"tenancy aggregates cannot apply {type(event).__name__}")


def _bump(state: TenancyState | None, event: Event, **changes: object) -> TenancyState:
    assert state is not None, f"{type(event).__name__} before its aggregate was created"
    return msgspec.structs.replace(state, version=event.originator_version, **changes)


@_apply.register
def _(event: ev.DomainCreated, state: TenancyState | None) -> TenancyState:
    return DomainState(
        id=event.originator_id, version=event.originator_version, name=event.name, description=event.description,
        total_resource_slots=dict(event.total_resource_slots),
    )


@_apply.register
def _(event: ev.DomainUpdated, state: TenancyState | None) -> TenancyState:
    return _bump(state, event, total_resource_slots=dict(event.total_resource_slots))


@_apply.register
def _(event: ev.ProjectCreated, state: TenancyState | None) -> TenancyState:
    return ProjectState(
        id=event.originator_id, version=event.originator_version, name=event.name, domain=event.domain,
        description=event.description, total_resource_slots=dict(event.total_resource_slots),
    )


@_apply.register
def _(event: ev.ProjectUpdated, state: TenancyState | None) -> TenancyState:
    return _bump(state, event, total_resource_slots=dict(event.total_resource_slots))


@_apply.register
def _(event: ev.ProjectStorageLimitSet, state: TenancyState | None) -> TenancyState:
    return _bump(state, event, max_quota_scope_size=event.max_quota_scope_size)


@_apply.register
def _(event: ev.UserCreated, state: TenancyState | None) -> TenancyState:
    return UserState(
        id=event.originator_id, version=event.originator_version, name=event.name, domain=event.domain,
        role=event.role, projects=tuple(event.projects),
    )


@_apply.register
def _(event: ev.UserDeactivated, state: TenancyState | None) -> TenancyState:
    return _bump(state, event, is_active=False)


@_apply.register
def _(event: ev.KeypairCreated, state: TenancyState | None) -> TenancyState:
    return KeypairState(
        id=event.originator_id, version=event.originator_version, user=event.user, role=event.role,
        domain=event.domain, resource_policy=event.resource_policy,
    )


@_apply.register
def _(event: ev.KeypairDeactivated, state: TenancyState | None) -> TenancyState:
    return _bump(state, event, is_active=False)


@_apply.register
def _(event: ev.KeypairPolicyChanged, state: TenancyState | None) -> TenancyState:
    return _bump(state, event, resource_policy=event.resource_policy)


@_apply.register
def _(event: ev.ResourcePolicyCreated, state: TenancyState | None) -> TenancyState:
    return PolicyState(id=event.originator_id, version=event.originator_version, name=event.name, limits=event.limits)


@_apply.register
def _(event: ev.ResourcePolicyUpdated, state: TenancyState | None) -> TenancyState:
    return _bump(state, event, limits=event.limits)


@_apply.register
def _(event: ev.ResourceGroupCreated, state: TenancyState | None) -> TenancyState:
    return ResourceGroupState(
        id=event.originator_id, version=event.originator_version, name=event.name, description=event.description,
        options=event.options,
    )


@_apply.register
def _(event: ev.ResourceGroupUpdated, state: TenancyState | None) -> TenancyState:
    return _bump(state, event, options=event.options)
