"""Reports: facts observed by agents at the edge, turned into events by the controller.

Reports are not events: agents never write the event store. They travel on the
work-queue stream ``REPORTS`` and may arrive twice or late; the controller makes
each one idempotent.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import msgspec

__all__ = [
    "AgentHeartbeat",
    "AgentStarted",
    "AnyReport",
    "KernelCreatingReport",
    "KernelExitedReport",
    "KernelPullingReport",
    "KernelRunningReport",
    "Report",
    "decode_report",
    "encode_report",
]


class Report(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    agent_id: str
    observed_at: dt.datetime

    @classmethod
    def type_name(cls) -> str:
        return str(cls.__struct_config__.tag)


class AgentStarted(Report, frozen=True, kw_only=True, tag="agent_started"):
    capacity: dict[str, Decimal]
    backend: str
    hostname: str
    resource_group: str = "default"


class KernelPullingReport(Report, frozen=True, kw_only=True, tag="kernel_pulling"):
    kernel_id: str
    session_id: str


class KernelCreatingReport(Report, frozen=True, kw_only=True, tag="kernel_creating"):
    kernel_id: str
    session_id: str


class KernelRunningReport(Report, frozen=True, kw_only=True, tag="kernel_running"):
    kernel_id: str
    session_id: str
    container_id: str


class KernelExitedReport(Report, frozen=True, kw_only=True, tag="kernel_exited"):
    kernel_id: str
    session_id: str
    exit_code: int | None = None
    reason: str = "self-terminated"


AnyReport = AgentStarted | KernelPullingReport | KernelCreatingReport | KernelRunningReport | KernelExitedReport

_report_decoder = msgspec.json.Decoder(AnyReport)


def encode_report(report: Report) -> bytes:
    """Returns the JSON bytes of a report."""
    return msgspec.json.encode(report)


def decode_report(data: bytes) -> AnyReport:
    """Returns the report in ``data``; raises ``msgspec.ValidationError``/``DecodeError`` on bad input."""
    return _report_decoder.decode(data)


class AgentHeartbeat(msgspec.Struct, frozen=True, kw_only=True):
    """Liveness beacon put in the heartbeat KV bucket; not an event."""

    agent_id: str
    sent_at: float
