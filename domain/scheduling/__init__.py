"""The pure scheduling core: ``plan(view, pending, now) -> Plan``.

Pipeline, in the style of Nomad and Backend.AI's Sokovan: sequence (``sequencing``) ->
validators (``filters``, quota in ``quota``) -> agent selection (``selection`` over a
strategy-ordered ``pool``) -> plan (``planner``). Inputs and outputs are in ``model``.
"""

from __future__ import annotations

from domain.scheduling.model import (
    AgentView,
    ClusterView,
    KernelRequest,
    PendingReason,
    PendingSession,
    Plan,
    SessionPlacement,
    Usage,
)
from domain.scheduling.planner import plan

__all__ = [
    "AgentView",
    "ClusterView",
    "KernelRequest",
    "PendingReason",
    "PendingSession",
    "Plan",
    "SessionPlacement",
    "Usage",
    "plan",
]
