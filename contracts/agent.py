"""Events of the agent context: capacity, kernel assignments, liveness.

An agent consumes the events of its own aggregate (``ev.agent.<id>.>``), so
assignments and termination requests reach it without any RPC.
"""

from __future__ import annotations

from decimal import Decimal

from contracts.envelope import Event
from contracts.mounts import MountSpec
from contracts.status import Reason

__all__ = [
    "AgentCapacityChanged",
    "AgentLost",
    "AgentRecovered",
    "AgentRegistered",
    "KernelAssigned",
    "KernelReleased",
    "KernelTerminationRequested",
    "OrphanContainerDestroyed",
]


class AgentRegistered(Event, frozen=True, kw_only=True, tag="agent.registered"):
    capacity: dict[str, Decimal]
    backend: str
    hostname: str
    resource_group: str = "default"


class AgentCapacityChanged(Event, frozen=True, kw_only=True, tag="agent.capacity_changed"):
    capacity: dict[str, Decimal]


class KernelAssigned(Event, frozen=True, kw_only=True, tag="agent.kernel_assigned"):
    kernel_id: str
    session_id: str
    image: str
    slots: dict[str, Decimal]
    cluster_role: str = "main"
    startup_command: str | None = None
    mounts: list[MountSpec] = []
    """The session's folders, bind-mounted by the agent (none in older history)."""


class KernelTerminationRequested(Event, frozen=True, kw_only=True, tag="agent.kernel_termination_requested"):
    kernel_id: str
    session_id: str
    reason: Reason


class KernelReleased(Event, frozen=True, kw_only=True, tag="agent.kernel_released"):
    kernel_id: str
    session_id: str


class OrphanContainerDestroyed(Event, frozen=True, kw_only=True, tag="agent.orphan_container_destroyed"):
    """The agent found a container of its own with no kernel assigned to it (the kernel was
    released, or never assigned) and destroyed it: recorded so the history says why."""

    kernel_id: str
    container_id: str
    exit_code: int | None = None
    reason: Reason = Reason.ORPHANED


class AgentLost(Event, frozen=True, kw_only=True, tag="agent.lost"):
    last_seen: float


class AgentRecovered(Event, frozen=True, kw_only=True, tag="agent.recovered"):
    pass
