"""Events of the session context: a session and its kernels."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from contracts.envelope import Event
from contracts.status import Reason, SessionStatus, SessionType

__all__ = [
    "ExecutionFinished",
    "KernelCreating",
    "KernelPlacement",
    "KernelPreparing",
    "KernelSpec",
    "KernelStarted",
    "KernelTerminated",
    "SessionRequested",
    "SessionScheduled",
    "SessionStatusChanged",
]


class KernelSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One container of a session, as requested."""

    kernel_id: str
    cluster_role: str = "main"
    cluster_idx: int = 0
    slots: dict[str, Decimal]


class KernelPlacement(msgspec.Struct, frozen=True, kw_only=True):
    kernel_id: str
    agent_id: str


class SessionRequested(Event, frozen=True, kw_only=True, tag="session.requested"):
    name: str
    owner: str
    image: str
    session_type: SessionType = SessionType.INTERACTIVE
    kernels: list[KernelSpec]
    startup_command: str | None = None


class SessionScheduled(Event, frozen=True, kw_only=True, tag="session.scheduled"):
    placements: list[KernelPlacement]


class KernelPreparing(Event, frozen=True, kw_only=True, tag="session.kernel_preparing"):
    kernel_id: str


class KernelCreating(Event, frozen=True, kw_only=True, tag="session.kernel_creating"):
    kernel_id: str


class KernelStarted(Event, frozen=True, kw_only=True, tag="session.kernel_started"):
    kernel_id: str
    container_id: str


class KernelTerminated(Event, frozen=True, kw_only=True, tag="session.kernel_terminated"):
    kernel_id: str
    exit_code: int | None = None
    reason: Reason


class ExecutionFinished(Event, frozen=True, kw_only=True, tag="session.execution_finished"):
    """Audit record of one code execution (the output itself is never an event)."""

    run_id: str
    kernel_id: str
    mode: str
    exit_code: int
    duration_ms: int
    code_digest: str
    """``sha256:<hex>`` of the code or command."""


class SessionStatusChanged(Event, frozen=True, kw_only=True, tag="session.status_changed"):
    status: SessionStatus
    reason: Reason
