"""Reports: facts observed by agents at the edge, turned into events by the controller.

Reports are not events: agents never write the event store. They travel on the
work-queue stream ``REPORTS`` and may arrive twice or late; the controller makes
each one idempotent.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Annotated

import msgspec

from contracts.limits import CHOICE, SLOTS

__all__ = [
    "AgentHeartbeat",
    "ALL_REPORTS",
    "AgentStarted",
    "AnyReport",
    "KernelCreatingReport",
    "KernelExitedReport",
    "KernelProgressReport",
    "KernelPullingReport",
    "KernelRunningReport",
    "MAX_CAPACITY_SLOTS",
    "MAX_CONTAINER_ID_CHARS",
    "MAX_DETAIL_CHARS",
    "MAX_HEARTBEAT_KERNELS",
    "MAX_HOSTNAME_CHARS",
    "MAX_ID_CHARS",
    "MAX_REASON_CHARS",
    "MAX_REPORTED_DETAIL_CHARS",
    "OrphanDestroyedReport",
    "Report",
    "clip_detail",
    "decode_report",
    "encode_report",
]


MAX_DETAIL_CHARS = 2000
"""The longest status detail a report carries into an event (longer ones are clipped)."""

# Every string of a report is bounded, generously for what a legitimate agent sends, so that an oversized one
# is refused when it is decoded (dead-lettered alone), never carried into an event the store refuses
# (``contracts.travel``) together with the other reports of its fetch.
MAX_ID_CHARS = 128
"""The longest agent, session or kernel id: a subject token (``contracts.subjects.check_token``)."""
MAX_CONTAINER_ID_CHARS = 256
"""The longest container id: Docker's are 64 hex digits, the other backends' name the kernel (``sim-<kernel id>``)."""
MAX_HOSTNAME_CHARS = 253
"""The longest host name (a DNS name)."""
MAX_REASON_CHARS = 2 * CHOICE
"""The longest exit reason (a ``contracts.status.Reason`` value, or one this version does not know)."""
MAX_REPORTED_DETAIL_CHARS = 4 * MAX_DETAIL_CHARS
"""The longest detail a report may hold (agents clip theirs to ``MAX_DETAIL_CHARS``; the controller clips
again)."""
MAX_CAPACITY_SLOTS = 4 * SLOTS.max_items
"""The most slot kinds an agent's capacity names (a session may ask for ``SLOTS.max_items``)."""
MAX_HEARTBEAT_KERNELS = 1024
"""The most kernels a heartbeat names in each of its lists: far above any real agent (its exec server streams at
most 128 runs at once, so at most 128 busy kernels; a node runs tens of kernels, Kubernetes' default is 110 pods),
so that a hostile agent's heartbeat of a million tiny entries is refused when it is decoded instead of being held
and walked by the controller at every beat."""

Id = Annotated[str, msgspec.Meta(max_length=MAX_ID_CHARS)]
ContainerId = Annotated[str, msgspec.Meta(max_length=MAX_CONTAINER_ID_CHARS)]
Detail = Annotated[str, msgspec.Meta(max_length=MAX_REPORTED_DETAIL_CHARS)]
SlotName = Annotated[str, msgspec.Meta(max_length=SLOTS.keys.max_length)]  # type: ignore[union-attr]


class Report(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    agent_id: Id
    observed_at: dt.datetime

    @classmethod
    def type_name(cls) -> str:
        return str(cls.__struct_config__.tag)


class AgentStarted(Report, frozen=True, kw_only=True, tag="agent_started"):
    capacity: Annotated[dict[SlotName, Decimal], msgspec.Meta(max_length=MAX_CAPACITY_SLOTS)]
    backend: Annotated[str, msgspec.Meta(max_length=CHOICE)]
    hostname: Annotated[str, msgspec.Meta(max_length=MAX_HOSTNAME_CHARS)]
    resource_group: Id = "default"


class KernelPullingReport(Report, frozen=True, kw_only=True, tag="kernel_pulling"):
    kernel_id: Id
    session_id: Id


class KernelProgressReport(Report, frozen=True, kw_only=True, tag="kernel_progress"):
    """How the preparation of a kernel advances (an image pull's layers and bytes), for people.
    Sent at most every few seconds per kernel; a lost one is harmless."""

    kernel_id: Id
    session_id: Id
    detail: Detail


class KernelCreatingReport(Report, frozen=True, kw_only=True, tag="kernel_creating"):
    kernel_id: Id
    session_id: Id


class KernelRunningReport(Report, frozen=True, kw_only=True, tag="kernel_running"):
    kernel_id: Id
    session_id: Id
    container_id: ContainerId


class KernelExitedReport(Report, frozen=True, kw_only=True, tag="kernel_exited"):
    kernel_id: Id
    session_id: Id
    exit_code: int | None = None
    reason: Annotated[str, msgspec.Meta(max_length=MAX_REASON_CHARS)] = "self-terminated"
    detail: Detail | None = None
    """Why, for people: the cause of a failed start (Docker's or the registry's message, the
    runner's last words, ...); None when the reason says it all."""


class OrphanDestroyedReport(Report, frozen=True, kw_only=True, tag="orphan_destroyed"):
    """The agent destroyed a container of its own that no kernel assigned to it explains."""

    kernel_id: Id
    container_id: ContainerId
    exit_code: int | None = None


ALL_REPORTS: tuple[type[Report], ...] = (
    AgentStarted, KernelPullingReport, KernelProgressReport, KernelCreatingReport, KernelRunningReport,
    KernelExitedReport, OrphanDestroyedReport,
)
"""Every report type (the decoder's union, the controller's table, the AsyncAPI document)."""

AnyReport = (
    AgentStarted | KernelPullingReport | KernelProgressReport | KernelCreatingReport | KernelRunningReport
    | KernelExitedReport | OrphanDestroyedReport
)

_report_decoder = msgspec.json.Decoder(AnyReport)


_UNSHOWN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")
"""What a detail may not hold: control characters but tab and newline (NUL above all: PostgreSQL's text refuses
it, and the projector dead-lettered the kernel's end), and lone surrogates (not encodable)."""


def clip_detail(text: str | None, limit: int = MAX_DETAIL_CHARS) -> str | None:
    """Returns ``text`` stripped and at most ``limit`` characters long: a longer one keeps its
    beginning and its end (where a log's last words are) around an ellipsis; each control character but
    tab and newline, and each lone surrogate, is U+FFFD (a kernel's last words may hold anything); None stays
    None."""
    if text is None:
        return None
    text = _UNSHOWN.sub("\ufffd", text).strip()
    if len(text) <= limit:
        return text
    head = limit // 3
    tail = limit - head - 5
    return f"{text[:head]} ... {text[-tail:]}"


def encode_report(report: Report) -> bytes:
    """Returns the JSON bytes of a report."""
    return msgspec.json.encode(report)


def decode_report(data: bytes) -> AnyReport:
    """Returns the report in ``data``; raises ``msgspec.ValidationError``/``DecodeError`` on bad input."""
    return _report_decoder.decode(data)


class AgentHeartbeat(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Liveness beacon put in the heartbeat KV bucket; not an event."""

    agent_id: Id
    sent_at: float
    busy_kernels: Annotated[list[Id], msgspec.Meta(max_length=MAX_HEARTBEAT_KERNELS)] = []
    """The kernels running an execution as it beat: the controller's idle timeout spares their sessions."""
    app_traffic: Annotated[dict[Id, float], msgspec.Meta(max_length=MAX_HEARTBEAT_KERNELS)] = {}
    """Per kernel, when (the agent's wall clock, seconds since the epoch) bytes last moved between one of its apps
    and a client through the agent's app tunnels: the controller's idle timeout counts it as activity."""
