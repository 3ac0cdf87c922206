"""Enqueue-time checks of a session request against tenancy (Backend.AI's enqueue validators).

Pure functions over the states the caller loaded: the project must exist in the caller's
domain and have the caller as a member (admins may use any project of their domain), the
resource group must exist, be visible to the caller and allow the session type, and the
keypair's resource policy bounds the containers per session and the pending sessions (count
and slots). A refusal is an ``InvalidRequestError`` or a ``QuotaExceededError``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Mapping

import msgspec

from contracts.slots import add_slots
from contracts.status import SessionType
from contracts.tenancy import DEFAULT_PROJECT, KeypairLimits, ResourceGroupOptions, Role
from domain.errors import DomainError, InvalidRequestError
from domain.tenancy.states import ProjectState, ResourceGroupState, UserState

__all__ = [
    "EnqueueFacts",
    "QuotaExceededError",
    "check_enqueue",
    "choose_project",
    "is_visible",
]

LEGACY_PROJECTS = (DEFAULT_PROJECT,)
"""Projects of a keypair whose user predates tenancy (no user aggregate)."""


class QuotaExceededError(DomainError):
    """Raised when a request would exceed a limit of the caller's resource policy."""


class EnqueueFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What the caller loaded for one request: who asks, what for, and the current usage."""

    access_key: str
    domain: str
    privileged: bool
    """Admins and superadmins may use any project of their domain."""
    user: UserState | None
    project_name: str
    project: ProjectState | None
    group_name: str
    group: ResourceGroupState | None
    session_type: SessionType
    cluster_size: int
    requested_slots: dict[str, Decimal]
    """The sum over the session's kernels."""
    limits: KeypairLimits
    pending_count: int
    """PENDING sessions the keypair has now."""
    pending_slots: dict[str, Decimal]
    """Sum of their requested slots."""


def choose_project(user: UserState | None, requested: str | None) -> str:
    """Returns the project of a request: the requested one, else ``default`` when the user is a
    member, else the user's first project; raises when the user belongs to none."""
    if requested:
        return requested
    projects = user.projects if user is not None else LEGACY_PROJECTS
    if DEFAULT_PROJECT in projects:
        return DEFAULT_PROJECT
    if projects:
        return projects[0]
    if user is not None and user.role is not Role.USER:
        return DEFAULT_PROJECT  # admins may use any project of their domain
    raise InvalidRequestError(f"user {user.name if user else '?'} belongs to no project: ask an admin to add one")


def is_visible(options: ResourceGroupOptions, *, domain: str, project: str, access_key: str) -> bool:
    """Returns True when a resource group may be used from this domain, project and keypair."""
    seen = options.visibility
    return seen.public or domain in seen.domains or project in seen.projects or access_key in seen.keypairs


def check_enqueue(facts: EnqueueFacts) -> None:
    """Raises when the request may not be enqueued; returns None when it may."""
    _check_project(facts)
    _check_group(facts)
    _check_limits(facts.limits, facts)


def _check_project(facts: EnqueueFacts) -> None:
    name, project = facts.project_name, facts.project
    if project is None or project.domain != facts.domain:
        raise InvalidRequestError(f"project {name} does not exist in domain {facts.domain}")
    projects = facts.user.projects if facts.user is not None else LEGACY_PROJECTS
    if not facts.privileged and name not in projects:
        raise InvalidRequestError(f"you are not a member of project {name}")


def _check_group(facts: EnqueueFacts) -> None:
    name, group = facts.group_name, facts.group
    if group is None or not is_visible(
        group.options, domain=facts.domain, project=facts.project_name, access_key=facts.access_key
    ):
        raise InvalidRequestError(f"resource group {name} does not exist or is not available to you")
    allowed = group.options.allowed_session_types
    if facts.session_type not in allowed:
        kinds = ", ".join(t.value for t in allowed)
        raise InvalidRequestError(
            f"resource group {name} does not allow {facts.session_type.value} sessions (allowed: {kinds})")


def _check_limits(limits: KeypairLimits, facts: EnqueueFacts) -> None:
    if limits.max_containers_per_session and facts.cluster_size > limits.max_containers_per_session:
        raise QuotaExceededError(
            f"a session may have at most {limits.max_containers_per_session} containers under your resource policy,"
            f" requested {facts.cluster_size}")
    if limits.max_pending_session_count and facts.pending_count + 1 > limits.max_pending_session_count:
        raise QuotaExceededError(
            f"you already have {facts.pending_count} pending sessions; your resource policy allows"
            f" {limits.max_pending_session_count}")
    over = _exceeded(limits.max_pending_session_resource_slots, add_slots(facts.pending_slots, facts.requested_slots))
    if over:
        raise QuotaExceededError(
            "pending sessions would exceed max_pending_session_resource_slots of your resource policy: "
            + ", ".join(f"{slot} {used} > {limit}" for slot, used, limit in over))


def _exceeded(limit: Mapping[str, Decimal], used: Mapping[str, Decimal]) -> list[tuple[str, Decimal, Decimal]]:
    """Returns (slot, would-be usage, limit) for each limited slot that the usage passes."""
    return [(slot, used.get(slot, Decimal(0)), cap) for slot, cap in sorted(limit.items())
            if used.get(slot, Decimal(0)) > cap]
