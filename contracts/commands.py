"""Commands: imperative requests that the domain accepts or refuses with a clear error."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from contracts.mounts import MountSpec
from contracts.session import KernelPlacement, SessionSpec
from contracts.status import Reason

__all__ = [
    "AssignKernel",
    "ConsumeQuota",
    "MarkAgentLost",
    "MarkAgentRecovered",
    "MarkKernelCreating",
    "MarkKernelExited",
    "MarkKernelPreparing",
    "MarkKernelStarted",
    "RecordExecution",
    "RecordKernelProgress",
    "RecordOrphanDestroyed",
    "RegisterAgent",
    "ReleaseKernel",
    "ReleaseQuota",
    "RequestKernelTermination",
    "RequestSession",
    "ScheduleSession",
    "TerminateSession",
]


class Command(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    pass


class RequestSession(Command, frozen=True, kw_only=True):
    """Asks for a new session: its owner (an access key) and what it asks for."""

    owner: str
    spec: SessionSpec


class ScheduleSession(Command, frozen=True, kw_only=True):
    placements: list[KernelPlacement]


class MarkKernelPreparing(Command, frozen=True, kw_only=True):
    kernel_id: str


class MarkKernelCreating(Command, frozen=True, kw_only=True):
    kernel_id: str


class MarkKernelStarted(Command, frozen=True, kw_only=True):
    kernel_id: str
    container_id: str


class MarkKernelExited(Command, frozen=True, kw_only=True):
    kernel_id: str
    exit_code: int | None = None
    reason: Reason = Reason.SELF_TERMINATED
    detail: str | None = None


class RecordKernelProgress(Command, frozen=True, kw_only=True):
    kernel_id: str
    detail: str


class RecordExecution(Command, frozen=True, kw_only=True):
    run_id: str
    kernel_id: str
    mode: str
    exit_code: int
    duration_ms: int
    code_digest: str


class TerminateSession(Command, frozen=True, kw_only=True):
    reason: Reason = Reason.USER_REQUESTED


class RegisterAgent(Command, frozen=True, kw_only=True):
    capacity: dict[str, Decimal]
    backend: str
    hostname: str
    resource_group: str = "default"


class AssignKernel(Command, frozen=True, kw_only=True):
    kernel_id: str
    session_id: str
    image: str
    slots: dict[str, Decimal]
    cluster_role: str = "main"
    startup_command: str | None = None
    mounts: list[MountSpec] = []


class RequestKernelTermination(Command, frozen=True, kw_only=True):
    kernel_id: str
    reason: Reason


class ReleaseKernel(Command, frozen=True, kw_only=True):
    kernel_id: str


class MarkAgentLost(Command, frozen=True, kw_only=True):
    last_seen: float


class MarkAgentRecovered(Command, frozen=True, kw_only=True):
    pass


class RecordOrphanDestroyed(Command, frozen=True, kw_only=True):
    kernel_id: str
    container_id: str
    exit_code: int | None = None


class ConsumeQuota(Command, frozen=True, kw_only=True):
    """Sessions placed by one scheduling pass start holding these slots in one quota scope."""

    allocations: dict[str, dict[str, Decimal]]
    """session id -> slots (the sum over its kernels)."""


class ReleaseQuota(Command, frozen=True, kw_only=True):
    """A session stops holding its slots in one quota scope (a no-op when it holds none)."""

    session_id: str
