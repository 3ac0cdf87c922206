"""Events of the session context: a session and its kernels."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import msgspec

from contracts.envelope import Event
from contracts.mounts import MountSpec
from contracts.status import ClusterMode, Reason, SessionStatus, SessionType

__all__ = [
    "DEFAULT_PRIORITY",
    "ExecutionFinished",
    "KernelCreating",
    "KernelPlacement",
    "KernelPreparing",
    "KernelProgressed",
    "KernelSpec",
    "KernelStarted",
    "KernelTerminated",
    "SessionPendingReasonChanged",
    "SessionRequested",
    "SessionScheduled",
    "SessionSpec",
    "SessionStatusChanged",
]

DEFAULT_PRIORITY = 10
"""A session's priority unless asked otherwise; a user may ask for less, only an admin for more."""


class KernelSpec(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One container of a session, as requested."""

    kernel_id: str
    cluster_role: str = "main"
    cluster_idx: int = 0
    slots: dict[str, Decimal]


class KernelPlacement(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    kernel_id: str
    agent_id: str


class SessionSpec(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A session as requested: everything its owner asks for (and the tenancy the gateway fills
    in at enqueue), declared once and carried whole by ``RequestSession``, ``SessionRequested``
    and the Session aggregate's state."""

    name: str
    image: str
    session_type: SessionType = SessionType.INTERACTIVE
    kernels: list[KernelSpec]
    startup_command: str | None = None
    user: str = ""
    """Name of the owning user ("" in history from before tenancy)."""
    domain: str = "default"
    project: str = "default"
    resource_group: str = "default"
    priority: int = DEFAULT_PRIORITY
    """0..100, higher first (Backend.AI's default is 10); above the default for admins only."""
    cluster_mode: ClusterMode = ClusterMode.SINGLE_NODE
    starts_at: dt.datetime | None = None
    """A batch session is not placed before this time."""
    batch_timeout: int = 0
    """Seconds a batch session may run (0: no limit)."""
    dependencies: list[str] = []
    """Sessions that must have finished successfully first."""
    designated_agents: list[str] = []
    """When not empty, only these agents may run the session."""
    mounts: list[MountSpec] = []
    """Storage folders mounted into every kernel, resolved and checked at enqueue (none in older history)."""


class SessionRequested(Event, frozen=True, kw_only=True, tag="session.requested"):
    """A session was requested. History from before ``spec`` has the spec's fields flat in the
    event; ``contracts.catalog.decode_event`` upcasts it (``contracts.upcasts``)."""

    owner: str
    """Access key of the owner."""
    spec: SessionSpec


class SessionPendingReasonChanged(Event, frozen=True, kw_only=True, tag="session.pending_reason_changed"):
    """Why a pending session could not be placed by the last scheduling pass (recorded
    only when the reason changes)."""

    code: str
    """A stable code: ``quota-exceeded``, ``no-agent``, ``head-of-line``, ``dependency``, ..."""
    message: str


class SessionScheduled(Event, frozen=True, kw_only=True, tag="session.scheduled"):
    placements: list[KernelPlacement]


class KernelPreparing(Event, frozen=True, kw_only=True, tag="session.kernel_preparing"):
    kernel_id: str


class KernelProgressed(Event, frozen=True, kw_only=True, tag="session.kernel_progressed"):
    """How a preparing kernel advances (an image pull's layers and bytes), for people: the
    session's status detail until its next status. Recorded at most every few seconds."""

    kernel_id: str
    detail: str


class KernelCreating(Event, frozen=True, kw_only=True, tag="session.kernel_creating"):
    kernel_id: str


class KernelStarted(Event, frozen=True, kw_only=True, tag="session.kernel_started"):
    kernel_id: str
    container_id: str


class KernelTerminated(Event, frozen=True, kw_only=True, tag="session.kernel_terminated"):
    kernel_id: str
    exit_code: int | None = None
    reason: Reason
    detail: str | None = None
    """Why, for people (the cause of a failed start as the agent saw it); None in older history."""


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
    detail: str | None = None
    """Why, for people: the cause of a failed start carried over from the kernel that failed."""
