"""Statuses and reasons, named as in Backend.AI so its users feel at home."""

from __future__ import annotations

from enum import Enum

__all__ = ["LIVE_SESSION_STATUSES", "AgentStatus", "ClusterMode", "KernelStatus", "Reason", "SessionStatus",
           "SessionType"]


class SessionStatus(str, Enum):
    PENDING = "PENDING"
    SCHEDULED = "SCHEDULED"
    PREPARING = "PREPARING"
    CREATING = "CREATING"
    RUNNING = "RUNNING"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_SESSION


_TERMINAL_SESSION = frozenset({SessionStatus.TERMINATED, SessionStatus.ERROR, SessionStatus.CANCELLED})
LIVE_SESSION_STATUSES = [status.value for status in SessionStatus if not status.is_terminal]
"""The values of the statuses of sessions not ended (a query's ``status = ANY(...)``)."""


class KernelStatus(str, Enum):
    PENDING = "PENDING"
    SCHEDULED = "SCHEDULED"
    PREPARING = "PREPARING"
    CREATING = "CREATING"
    RUNNING = "RUNNING"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_KERNEL


_TERMINAL_KERNEL = frozenset({KernelStatus.TERMINATED, KernelStatus.ERROR, KernelStatus.CANCELLED})


class AgentStatus(str, Enum):
    ALIVE = "ALIVE"
    LOST = "LOST"


class SessionType(str, Enum):
    INTERACTIVE = "interactive"
    BATCH = "batch"


class ClusterMode(str, Enum):
    SINGLE_NODE = "single-node"
    """Every kernel on one agent."""
    MULTI_NODE = "multi-node"
    """One agent per kernel allowed; placed all at once or not at all."""


class Reason(str, Enum):
    """Closed vocabulary of transition reasons."""

    USER_REQUESTED = "user-requested"
    SCHEDULED = "scheduled"
    KERNEL_PREPARING = "kernel-preparing"
    KERNEL_CREATING = "kernel-creating"
    ALL_KERNELS_RUNNING = "all-kernels-running"
    ALL_KERNELS_TERMINATED = "all-kernels-terminated"
    SELF_TERMINATED = "self-terminated"
    FAILED_TO_START = "failed-to-start"
    AGENT_LOST = "agent-lost"
    TASK_FINISHED = "task-finished"
    TASK_FAILED = "task-failed"
    OOM_KILLED = "oom-killed"
    IDLE_TIMEOUT = "idle-timeout"
    MAX_LIFETIME = "max-lifetime"
    FORCE_TERMINATED = "force-terminated"
    PENDING_TIMEOUT = "pending-timeout"
    TASK_TIMEOUT = "task-timeout"
    TRANSITION_TIMEOUT = "transition-timeout"
    """The session stayed in a transitional state (SCHEDULED, PREPARING, CREATING, TERMINATING)
    beyond that state's deadline: the controller ended it in ERROR."""
    VANISHED = "vanished"
    """The agent found no container for a kernel it ran (removed behind its back)."""
    ORPHANED = "orphaned"
    """The agent destroyed a container of its own with no kernel assigned to it."""

    @property
    def fails_kernel(self) -> bool:
        """True when a kernel that ended for this reason ended in ERROR, not TERMINATED."""
        return self in _KERNEL_FAILURES


_KERNEL_FAILURES = frozenset({Reason.FAILED_TO_START, Reason.TRANSITION_TIMEOUT})
