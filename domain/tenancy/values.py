"""Validation of the raw values in tenancy commands: names, slots, limits, roles and
resource-group options. Every refusal is an ``InvalidRequestError`` that names the field."""

from __future__ import annotations

from decimal import Decimal
from typing import Mapping, TypeVar

import msgspec

from contracts.slots import SlotError, parse_slots
from contracts.status import SessionType
from contracts.subjects import SubjectError, check_token
from contracts.tenancy import KeypairLimits, ResourceGroupOptions, Role, SchedulerPolicy, SelectionStrategy, Visibility
from contracts.tenancy_commands import GroupOptionsChange, LimitsChange
from contracts.vfolder import VolumePermission
from domain.errors import InvalidRequestError

__all__ = ["MAX_NAME", "apply_limits", "apply_options", "checked_name", "checked_role", "checked_slots"]

MAX_NAME = 64
"""Names become aggregate ids with a kind prefix, which must stay subject tokens (<= 128)."""

E = TypeVar("E")


def checked_name(value: str, what: str) -> str:
    """Returns ``value`` when it is a subject-safe token of at most ``MAX_NAME`` characters."""
    try:
        check_token(value, what)
    except SubjectError as exc:
        raise InvalidRequestError(str(exc)) from exc
    if len(value) > MAX_NAME:
        raise InvalidRequestError(f"{what} {value!r} is longer than {MAX_NAME} characters")
    return value


def checked_slots(raw: Mapping[str, str | int | Decimal], what: str) -> dict[str, Decimal]:
    """Returns parsed slot amounts (``"4g"`` works for memory); refuses unknown slots and negatives."""
    try:
        return parse_slots(raw)
    except SlotError as exc:
        raise InvalidRequestError(f"{what}: {exc}") from exc


def checked_role(raw: str) -> Role:
    """Returns the role named ``raw`` (any case)."""
    return _choice(Role, raw, "role")


def _choice(enum: type[E], raw: str, what: str) -> E:
    try:
        return enum(raw.strip().lower())  # type: ignore[call-arg]
    except ValueError:
        known = ", ".join(m.value for m in enum)  # type: ignore[attr-defined]
        raise InvalidRequestError(f"unknown {what} {raw!r} (known: {known})") from None


def _count(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequestError(f"{what} must be a non-negative integer (0: no limit), got {value!r}")
    return value


def apply_limits(current: KeypairLimits, change: LimitsChange) -> KeypairLimits:
    """Returns ``current`` with the fields that ``change`` sets, each validated."""
    fields: dict[str, object] = {}
    for name in ("total_resource_slots", "max_pending_session_resource_slots"):
        raw = getattr(change, name)
        if raw is not None:
            fields[name] = checked_slots(raw, name)
    for name in ("max_concurrent_sessions", "max_pending_session_count", "max_containers_per_session",
                 "idle_timeout", "max_session_lifetime", "rate_limit", "max_concurrent_subscriptions",
                 "max_vfolder_count", "max_quota_scope_size"):
        value = getattr(change, name)
        if value is not None:
            fields[name] = _count(value, name)
    if change.allowed_vfolder_hosts is not None:
        fields["allowed_vfolder_hosts"] = {
            checked_name(volume, "volume"): sorted({_choice(VolumePermission, p, "volume permission") for p in perms},
                                                   key=lambda p: p.value)
            for volume, perms in change.allowed_vfolder_hosts.items()}
    return msgspec.structs.replace(current, **fields)


def apply_options(current: ResourceGroupOptions, change: GroupOptionsChange) -> ResourceGroupOptions:
    """Returns ``current`` with the options that ``change`` sets, each validated."""
    fields: dict[str, object] = {}
    if change.scheduler is not None:
        fields["scheduler"] = _choice(SchedulerPolicy, change.scheduler, "scheduler")
    if change.agent_selection is not None:
        fields["agent_selection"] = _choice(SelectionStrategy, change.agent_selection, "agent selection")
    if change.allowed_session_types is not None:
        types = [_choice(SessionType, t, "session type") for t in change.allowed_session_types]
        if not types:
            raise InvalidRequestError("allowed session types must not be empty")
        fields["allowed_session_types"] = sorted(set(types), key=lambda t: t.value)
    if change.pending_timeout is not None:
        fields["pending_timeout"] = _count(change.pending_timeout, "pending_timeout")
    visibility = _visibility(current.visibility, change)
    if visibility != current.visibility:
        fields["visibility"] = visibility
    return msgspec.structs.replace(current, **fields)


def _visibility(current: Visibility, change: GroupOptionsChange) -> Visibility:
    fields: dict[str, object] = {}
    if change.public is not None:
        fields["public"] = change.public
    for name, what in (("domains", "domain"), ("projects", "project"), ("keypairs", "access key")):
        values = getattr(change, name)
        if values is not None:
            fields[name] = sorted({checked_name(v, what) for v in values})
    return msgspec.structs.replace(current, **fields)
