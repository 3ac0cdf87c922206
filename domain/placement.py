"""Placeholder placement: first fit on agents' free slots (the real scheduler comes later).

Pure: takes the pending sessions and the agents, returns placements and, for each
session left pending, the reason.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Sequence

import msgspec

from contracts.session import KernelPlacement
from contracts.slots import add_slots, fits, subtract_slots
from contracts.status import AgentStatus

__all__ = ["AgentView", "PendingSession", "Plan", "first_fit"]


class PendingSession(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    kernels: tuple[tuple[str, dict[str, Decimal]], ...]
    """(kernel_id, slots) per kernel; all kernels go on one agent (single-node)."""


class AgentView(msgspec.Struct, frozen=True, kw_only=True):
    agent_id: str
    free: dict[str, Decimal]
    status: AgentStatus = AgentStatus.ALIVE


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    placements: dict[str, list[KernelPlacement]]
    pending_reasons: dict[str, str]


def first_fit(pending: Sequence[PendingSession], agents: Sequence[AgentView]) -> Plan:
    """Returns a plan placing each session, in order, on the first agent with room for all its kernels."""
    free = {a.agent_id: dict(a.free) for a in agents if a.status is AgentStatus.ALIVE}
    placements: dict[str, list[KernelPlacement]] = {}
    reasons: dict[str, str] = {}
    for session in pending:
        total: dict[str, Decimal] = {}
        for _, slots in session.kernels:
            total = add_slots(total, slots)
        agent_id = next((aid for aid, room in free.items() if fits(total, room)), None)
        if agent_id is None:
            reasons[session.session_id] = "no agent has enough free slots" if free else "no agent is alive"
            continue
        free[agent_id] = subtract_slots(free[agent_id], total)
        placements[session.session_id] = [KernelPlacement(kernel_id=k, agent_id=agent_id) for k, _ in session.kernels]
    return Plan(placements=placements, pending_reasons=reasons)
