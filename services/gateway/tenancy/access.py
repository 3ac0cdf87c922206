"""Who may change which tenancy aggregate, and the plumbing the tenancy mutations share.

A superadmin may do everything. An admin acts only within its own domain: it creates and
updates projects, creates and deactivates users (never a superadmin) and their keypairs (with
the default policy, never lifting one a superadmin assigned); domains, policies, resource
groups and the assignment of policies are the superadmin's.
A user may change nothing. Something outside the caller's domain is NOT_FOUND, so that
existence does not leak; a forbidden action inside it is FORBIDDEN.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from contracts.commands import Command
from contracts.slots import SlotError
from contracts.subjects import SubjectError
from contracts.tenancy import Role
from domain.errors import DomainError
from domain.tenancy import TenancyState
from services.application.context import make_context
from services.gateway.auth.principal import Principal
from services.gateway.context import Info, caller
from services.gateway.errors import BAD_INPUT, FORBIDDEN, NOT_FOUND, GatewayError, from_domain
from contracts.limits import DESCRIPTION
from services.gateway.limits import checked, checked_name, checked_value
from services.gateway.slots import SlotInput

__all__ = [
    "admin_caller",
    "checked_input",
    "guarded",
    "in_scope",
    "load",
    "raw_slots",
    "run_command",
    "superadmin_caller",
    "unless_superadmin_target",
]

S = TypeVar("S")
T = TypeVar("T")


def superadmin_caller(info: Info, what: str) -> Principal:
    """Returns the caller when it is a superadmin; FORBIDDEN otherwise."""
    principal = caller(info)
    if not principal.is_superadmin:
        raise GatewayError(FORBIDDEN, f"only a superadmin may {what}")
    return principal


def admin_caller(info: Info, what: str) -> Principal:
    """Returns the caller when it is an admin or a superadmin; FORBIDDEN otherwise."""
    principal = caller(info)
    if not principal.is_admin:
        raise GatewayError(FORBIDDEN, f"only an admin may {what}")
    return principal


def in_scope(principal: Principal, state: TenancyState | None, cls: type[S], what: str, name: str) -> S:
    """Returns ``state`` when it is a ``cls`` of a domain the caller manages; NOT_FOUND otherwise."""
    if not isinstance(state, cls) or not principal.manages(getattr(state, "domain")):
        raise GatewayError(NOT_FOUND, f"{what} {name} not found")
    return state


def unless_superadmin_target(principal: Principal, role: Role, what: str) -> None:
    """Refuses (FORBIDDEN) an admin acting on a superadmin's user or keypair."""
    if role is Role.SUPERADMIN and not principal.is_superadmin:
        raise GatewayError(FORBIDDEN, f"only a superadmin may {what} of a superadmin")


def checked_input(data: object) -> None:
    """Refuses (BAD_INPUT) a tenancy input whose name, domain or description is over its limit, before
    anything is loaded (an update's name is the key of what it loads; a description it ignores is
    bounded all the same)."""
    for field in ("name", "domain"):
        checked_name(field, getattr(data, field, None))
    description = getattr(data, "description", None)
    if description is not None:
        checked_value(DESCRIPTION, description)


def raw_slots(items: list[SlotInput] | None, what: str) -> dict[str, str] | None:
    """Returns slot inputs as a mapping (None stays None); a slot given twice is BAD_INPUT."""
    if items is None:
        return None
    raw: dict[str, str] = {}
    for item in items:
        if item.slot in raw:
            raise GatewayError(BAD_INPUT, f"{what}: resource slot {item.slot!r} given twice")
        raw[item.slot] = item.amount
    return raw


async def load(info: Info, aggregate_id: str) -> TenancyState | None:
    """Returns the current state of a tenancy aggregate (from the event store, never stale)."""
    resources = info.context.resources
    return await resources.call(resources.tenancy.get, aggregate_id)


async def guarded(info: Info, fn: Callable[..., T], *args: object) -> T:
    """Returns ``fn(*args)`` run on the store's threads; a refused command becomes its GraphQL error."""
    try:
        return await info.context.resources.call(fn, *args)
    except (DomainError, SlotError, SubjectError) as exc:
        raise from_domain(exc) from exc


async def run_command(info: Info, principal: Principal, aggregate_id: str, command: Command) -> int:
    """Decides and saves a tenancy command as ``principal`` (BAD_INPUT when a field is over its
    limit, ``contracts.limits``); returns the position."""
    checked(command)
    tenancy = info.context.resources.tenancy
    return await guarded(info, tenancy.handle, aggregate_id, command, make_context(principal.access_key))
