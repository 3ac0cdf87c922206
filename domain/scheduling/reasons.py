"""Pending reasons: the stable codes and the wording of each message.

A message names the numbers that matter (what was asked, what a limit allows) and
nothing that changes from one pass to the next unless the situation changed, so the
scheduler service can record a reason only when it differs from the last one.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, localcontext
from typing import Iterable, Mapping, Sequence

from contracts.slots import KNOWN_SLOTS, WIDE_PRECISION, SlotType
from domain.scheduling.model import PendingReason

__all__ = [
    "CONCURRENCY_LIMIT",
    "DEPENDENCY",
    "DESIGNATED_AGENT",
    "HEAD_OF_LINE",
    "NO_AGENT",
    "QUOTA_EXCEEDED",
    "SESSION_TYPE",
    "STARTS_AT",
    "TOO_LARGE",
    "Violation",
    "concurrency_limit",
    "dependency_failed",
    "dependency_unmet",
    "designated_absent",
    "designated_busy",
    "designated_too_small",
    "format_amount",
    "format_slots",
    "head_of_line",
    "kernel_does_not_fit",
    "no_alive_agent",
    "no_agent_fits",
    "quota_exceeded",
    "session_type_not_allowed",
    "starts_later",
    "too_large",
]

QUOTA_EXCEEDED = "quota-exceeded"
CONCURRENCY_LIMIT = "concurrency-limit"
NO_AGENT = "no-agent"
HEAD_OF_LINE = "head-of-line"
DEPENDENCY = "dependency"
STARTS_AT = "starts-at"
SESSION_TYPE = "session-type"
DESIGNATED_AGENT = "designated-agent"
TOO_LARGE = "too-large"

_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_TWO_PLACES = Decimal("0.01")

Violation = tuple[str, str, str, Decimal, Decimal, Decimal]
"""(scope, name, slot, in use, requested, limit) of one exceeded quota."""


def format_amount(slot: str, amount: Decimal) -> str:
    """Returns ``amount`` of ``slot`` for people: bytes with a binary unit (``4 GiB``), counts as is."""
    if KNOWN_SLOTS.get(slot) is SlotType.BYTES:
        unit = 0
        while unit < len(_BYTE_UNITS) - 1 and amount >= 1024 ** (unit + 1):
            unit += 1
        with localcontext(prec=WIDE_PRECISION):  # histories from before MAX_BYTES may hold 80 digits
            scaled = (amount / (1024**unit)).quantize(_TWO_PLACES).normalize()
        return f"{scaled:f} {_BYTE_UNITS[unit]}"
    return f"{amount.normalize():f}"


def format_slots(slots: Mapping[str, Decimal]) -> str:
    """Returns ``2 cpu, 4 GiB mem``: every slot in name order, ``nothing`` when empty."""
    parts = [f"{format_amount(name, slots[name])} {name}" for name in sorted(slots)]
    return ", ".join(parts) or "nothing"


def _names(items: Iterable[str]) -> str:
    return ", ".join(sorted(set(items)))


def session_type_not_allowed(kind: str, group: str, allowed: Sequence[str]) -> PendingReason:
    """Returns the reason for a session type the resource group does not run."""
    return PendingReason(
        code=SESSION_TYPE,
        message=f"resource group {group!r} does not allow {kind} sessions "
        f"(allowed: {_names(allowed) or 'none'})",
    )


def starts_later(starts_at: dt.datetime) -> PendingReason:
    """Returns the reason for a batch session whose start time has not come."""
    return PendingReason(code=STARTS_AT, message=f"scheduled to start at {starts_at.isoformat()}")


def dependency_failed(failed: Sequence[str]) -> PendingReason:
    """Returns the reason for a session one of whose dependencies ended unsuccessfully."""
    return PendingReason(
        code=DEPENDENCY, message=f"dependency {_names(failed)} failed; this session cannot start"
    )


def dependency_unmet(waiting: Sequence[str]) -> PendingReason:
    """Returns the reason for a session waiting for dependencies to finish successfully."""
    return PendingReason(code=DEPENDENCY, message=f"waiting for {_names(waiting)} to finish successfully")


def concurrency_limit(owner: str, running: int, limit: int) -> PendingReason:
    """Returns the reason for a keypair at its ``max_concurrent_sessions``."""
    return PendingReason(
        code=CONCURRENCY_LIMIT,
        message=f"keypair {owner!r} holds {running} sessions, its limit is {limit} concurrent sessions",
    )


def quota_exceeded(violations: Sequence[Violation]) -> PendingReason:
    """Returns one reason listing every exceeded quota, as Backend.AI reports them together."""
    parts = [
        f"{scope} {name!r} {slot}: {format_amount(slot, used)} in use + "
        f"{format_amount(slot, asked)} requested > limit {format_amount(slot, limit)}"
        for scope, name, slot, used, asked, limit in violations
    ]
    return PendingReason(code=QUOTA_EXCEEDED, message="quota exceeded: " + "; ".join(parts))


def no_alive_agent(group: str) -> PendingReason:
    """Returns the reason for a resource group without a single alive agent."""
    return PendingReason(code=NO_AGENT, message=f"no alive agent in resource group {group!r}")


def no_agent_fits(group: str, request: Mapping[str, Decimal]) -> PendingReason:
    """Returns the reason for a single-node session no agent has room for."""
    return PendingReason(
        code=NO_AGENT,
        message=f"no agent in resource group {group!r} has {format_slots(request)} free",
    )


def too_large(group: str, request: Mapping[str, Decimal]) -> PendingReason:
    """Returns the reason for a request no agent of the group could hold even when empty.

    It does not block the sessions behind it (no head-of-line): waiting for it would
    stall the group until a larger agent joins.
    """
    return PendingReason(
        code=TOO_LARGE,
        message=f"no agent in resource group {group!r} can ever hold {format_slots(request)} "
        "(larger than every agent's capacity); waiting for a larger agent",
    )


def kernel_does_not_fit(group: str, kernel_id: str, count: int, request: Mapping[str, Decimal]) -> PendingReason:
    """Returns the reason for a multi-node session one of whose kernels finds no room."""
    return PendingReason(
        code=NO_AGENT,
        message=f"no room in resource group {group!r} for all {count} kernels of this multi-node "
        f"session: no agent has {format_slots(request)} free for kernel {kernel_id!r}",
    )


def designated_busy(agents: Sequence[str], request: Mapping[str, Decimal]) -> PendingReason:
    """Returns the reason for designated agents that could hold the session but are full now."""
    return PendingReason(
        code=NO_AGENT,
        message=f"none of the designated agents ({_names(agents)}) has {format_slots(request)} free",
    )


def designated_absent(agents: Sequence[str], group: str) -> PendingReason:
    """Returns the reason for designated agents none of which is alive in the group."""
    return PendingReason(
        code=DESIGNATED_AGENT,
        message=f"none of the designated agents ({_names(agents)}) is an alive agent "
        f"of resource group {group!r}",
    )


def designated_too_small(agents: Sequence[str], request: Mapping[str, Decimal]) -> PendingReason:
    """Returns the reason for designated agents whose capacity can never hold the request."""
    return PendingReason(
        code=DESIGNATED_AGENT,
        message=f"none of the designated agents ({_names(agents)}) can ever hold "
        f"{format_slots(request)} (capacity too small)",
    )


def head_of_line(group: str) -> PendingReason:
    """Returns the reason for a session queued behind one that found no agent.

    It does not name the blocking session, so it stays the same from pass to pass.
    """
    return PendingReason(
        code=HEAD_OF_LINE,
        message=f"waiting behind an earlier session of resource group {group!r} that no agent has room for",
    )
