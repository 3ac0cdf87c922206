"""What the scheduling core takes and returns: plain, immutable values, no I/O.

The scheduler service keeps a ``ClusterView`` up to date from events and hands
it, with the pending sessions and the time, to ``plan``; the ``Plan`` says which
sessions go where, why the others wait, which ones expired, and when the next
time-driven pass is due.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import msgspec

from contracts.quota import QuotaScope
from contracts.status import ClusterMode, SessionType
from contracts.tenancy import KeypairLimits, ResourceGroupOptions

__all__ = [
    "AgentView",
    "ClusterView",
    "KernelRequest",
    "PendingReason",
    "PendingSession",
    "Plan",
    "SessionPlacement",
    "Usage",
]

Slots = dict[str, Decimal]


class KernelRequest(msgspec.Struct, frozen=True, kw_only=True):
    kernel_id: str
    slots: Slots


class PendingSession(msgspec.Struct, frozen=True, kw_only=True):
    """A session waiting to be placed, with everything a pass needs to decide."""

    session_id: str
    owner: str
    """Access key: the keypair scope of quotas and the DRF user."""
    domain: str
    project: str
    resource_group: str
    kernels: tuple[KernelRequest, ...]
    requested_at: dt.datetime
    session_type: SessionType = SessionType.INTERACTIVE
    priority: int = 10
    cluster_mode: ClusterMode = ClusterMode.SINGLE_NODE
    starts_at: dt.datetime | None = None
    dependencies: tuple[str, ...] = ()
    designated_agents: tuple[str, ...] = ()


class AgentView(msgspec.Struct, frozen=True, kw_only=True):
    agent_id: str
    resource_group: str
    capacity: Slots
    occupied: Slots
    alive: bool = True
    kernel_count: int = 0


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """What one quota scope holds now: the slots and the number of sessions."""

    slots: Slots = {}
    sessions: int = 0


class ClusterView(msgspec.Struct, frozen=True, kw_only=True):
    """The state a pass plans against.

    Limits: a keypair absent from ``keypair_limits`` (or a project or domain absent from
    theirs) has no limit; a slot absent from ``total_resource_slots`` is unlimited.
    A resource group absent from ``groups`` runs with the default options.
    """

    agents: dict[str, AgentView] = {}
    groups: dict[str, ResourceGroupOptions] = {}
    keypair_limits: dict[str, KeypairLimits] = {}
    project_limits: dict[str, Slots] = {}
    domain_limits: dict[str, Slots] = {}
    usage: dict[tuple[QuotaScope, str], Usage] = {}
    finished: dict[str, bool] = {}
    """Sessions that ended: True when successful (TERMINATED normally), False otherwise."""
    round_robin: dict[str, int] = {}
    """Per resource group, the index the round-robin strategy starts from."""


class SessionPlacement(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    kernels: tuple[tuple[str, str], ...]
    """(kernel_id, agent_id) per kernel."""


class PendingReason(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    """Stable: ``quota-exceeded``, ``concurrency-limit``, ``no-agent``, ``too-large``,
    ``head-of-line``, ``dependency``, ``starts-at``, ``session-type``, ``designated-agent``."""
    message: str


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    placements: list[SessionPlacement] = []
    """In the order they were decided."""
    pending: dict[str, PendingReason] = {}
    """Every pending session left unplaced, with the reason."""
    expired: list[str] = []
    """Sessions pending longer than their resource group's ``pending_timeout``."""
    wake_at: dt.datetime | None = None
    """The earliest time a pass could decide differently without any new event
    (a ``starts_at`` or a pending timeout), None when no such time."""
    round_robin: dict[str, int] = {}
    """The round-robin cursors after this plan."""
