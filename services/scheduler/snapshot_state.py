"""The scheduler's snapshot as plain values: what a checkpoint stores (``checkpoint.py``), and
what tests compare (the state after a checkpoint and the tail equals the state after a replay)."""

from __future__ import annotations

import msgspec

from contracts.quota import QuotaScope
from contracts.slots import ResourceSlots
from contracts.tenancy import KeypairLimits, ResourceGroupOptions
from domain.agent import AgentState
from domain.scheduling.model import PendingReason, PendingSession

__all__ = ["PendingState", "PoliciesState", "QuotaUsage", "SnapshotState", "TenancyState"]


class PendingState(msgspec.Struct, frozen=True, kw_only=True):
    """A pending session as planning sees it (its version is in ``SnapshotState.versions``). Not its
    request's free-form fields (startup command, mounts, name: up to ~75 KiB a session, which made
    the checkpoint too large to write): a pass reads those from the store for the sessions it places."""

    request: PendingSession
    reason: PendingReason | None = None


class QuotaUsage(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    version: int
    scope: QuotaScope
    name: str
    holding: dict[str, ResourceSlots]
    used: ResourceSlots


class PoliciesState(msgspec.Struct, frozen=True, kw_only=True):
    policy_of: dict[str, str]
    """keypair -> policy name"""
    limits: dict[str, KeypairLimits]
    """policy aggregate id -> limits"""


class TenancyState(msgspec.Struct, frozen=True, kw_only=True):
    policies: PoliciesState
    projects: dict[str, ResourceSlots]
    domains: dict[str, ResourceSlots]
    groups: dict[str, ResourceGroupOptions]
    names: dict[str, str]


class SnapshotState(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a ``Snapshot`` holds, pending sessions in request order."""

    versions: dict[str, int]
    pending: list[PendingState]
    finished: dict[str, bool]
    agents: list[AgentState]
    quotas: list[QuotaUsage]
    tenancy: TenancyState
