"""Every string of every report is bounded, so that an oversized one is refused when it is decoded (and
dead-lettered alone) instead of failing the save of every report of its fetch; legitimate values decode; the
largest report the bounds let through fits the ``REPORTS`` stream's ``max_msg_size``."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from contracts.reports import (
    ALL_REPORTS,
    MAX_CAPACITY_SLOTS,
    MAX_CONTAINER_ID_CHARS,
    MAX_DETAIL_CHARS,
    MAX_HOSTNAME_CHARS,
    MAX_ID_CHARS,
    MAX_REASON_CHARS,
    MAX_REPORTED_DETAIL_CHARS,
    AgentHeartbeat,
    AgentStarted,
    KernelCreatingReport,
    KernelExitedReport,
    KernelProgressReport,
    KernelPullingReport,
    KernelRunningReport,
    OrphanDestroyedReport,
    decode_report,
    encode_report,
)
from contracts.status import Reason
from services.common.bus import REPORTS_MAX_MSG_SIZE

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
WORST = "\x01"
"""The character JSON spends the most bytes on (``\\u0001``: six)."""
MSG_ID_ALLOWANCE = 1024
"""Bytes left for a report's headers (``Nats-Msg-Id``: agent, kernel, type and a count)."""


def worst(length: int) -> str:
    return WORST * length


def largest_reports() -> list[tuple[str, bytes]]:
    """Returns (type name, encoded bytes) of each report type with every string at its bound, each character
    the costliest to encode, and every list or mapping as long as allowed."""
    ids = {"agent_id": worst(MAX_ID_CHARS), "observed_at": NOW}
    kernel = {"kernel_id": worst(MAX_ID_CHARS), "session_id": worst(MAX_ID_CHARS)}
    capacity = {f"{i:02d}{worst(62)}": Decimal("9223372036854775807.999999") for i in range(MAX_CAPACITY_SLOTS)}
    reports = [
        AgentStarted(**ids, capacity=capacity, backend=worst(32), hostname=worst(MAX_HOSTNAME_CHARS),
                     resource_group=worst(MAX_ID_CHARS)),
        KernelPullingReport(**ids, **kernel),
        KernelProgressReport(**ids, **kernel, detail=worst(MAX_REPORTED_DETAIL_CHARS)),
        KernelCreatingReport(**ids, **kernel),
        KernelRunningReport(**ids, **kernel, container_id=worst(MAX_CONTAINER_ID_CHARS)),
        KernelExitedReport(**ids, **kernel, exit_code=-(2**63), reason=worst(MAX_REASON_CHARS),
                           detail=worst(MAX_REPORTED_DETAIL_CHARS)),
        OrphanDestroyedReport(**ids, kernel_id=worst(MAX_ID_CHARS), container_id=worst(MAX_CONTAINER_ID_CHARS),
                              exit_code=-(2**63)),
    ]
    return [(report.type_name(), encode_report(report)) for report in reports]


def _strings(schema: Any, path: str = "$") -> list[tuple[str, dict[str, Any]]]:
    """Returns every string schema in ``schema`` with where it is (property names of mappings included)."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(schema, dict):
        if schema.get("type") == "string" and "enum" not in schema and "format" not in schema:
            found.append((path, schema))
        for key, value in schema.items():
            found += _strings(value, f"{path}.{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            found += _strings(value, f"{path}[{index}]")
    return found


@pytest.mark.parametrize("cls", [*ALL_REPORTS, AgentHeartbeat], ids=lambda cls: cls.__name__)
def test_every_string_of_a_report_is_bounded(cls: type) -> None:
    _, components = msgspec.json.schema_components([cls])
    strings = _strings(components)
    assert strings, "the walk finds the strings"
    unbounded = [path for path, schema in strings if "maxLength" not in schema]
    assert [path for path in unbounded if not path.endswith(".observed_at")] == []  # a datetime: parsed, bounded
    names = [schema for path, schema in strings if path.endswith("propertyNames")]
    assert all("maxLength" in schema for schema in names)


@pytest.mark.parametrize(("field", "limit"), [
    ("container_id", MAX_CONTAINER_ID_CHARS), ("kernel_id", MAX_ID_CHARS), ("session_id", MAX_ID_CHARS),
    ("agent_id", MAX_ID_CHARS),
])
def test_an_oversized_string_is_refused_at_decode(field: str, limit: int) -> None:
    fields = {"agent_id": "evil", "observed_at": NOW, "kernel_id": "k", "session_id": "s", "container_id": "c"}
    data = msgspec.json.encode({"type": "kernel_running", **fields, field: "x" * 300_000})
    with pytest.raises(msgspec.ValidationError, match=f"length <= {limit}"):
        decode_report(data)
    at_limit = msgspec.json.encode({"type": "kernel_running", **fields, field: "x" * limit})
    assert getattr(decode_report(at_limit), field) == "x" * limit


def test_oversized_details_reasons_hostnames_and_capacities_are_refused() -> None:
    base = {"agent_id": "a1", "observed_at": NOW, "kernel_id": "k", "session_id": "s"}
    cases = [
        {"type": "kernel_exited", **base, "detail": "d" * (MAX_REPORTED_DETAIL_CHARS + 1)},
        {"type": "kernel_exited", **base, "reason": "r" * (MAX_REASON_CHARS + 1)},
        {"type": "kernel_progress", **base, "detail": "d" * (MAX_REPORTED_DETAIL_CHARS + 1)},
        {"type": "agent_started", "agent_id": "a1", "observed_at": NOW, "capacity": {}, "backend": "docker",
         "hostname": "h" * (MAX_HOSTNAME_CHARS + 1)},
        {"type": "agent_started", "agent_id": "a1", "observed_at": NOW, "backend": "docker", "hostname": "h",
         "capacity": {f"s{i}": "1" for i in range(MAX_CAPACITY_SLOTS + 1)}},
        {"type": "agent_started", "agent_id": "a1", "observed_at": NOW, "backend": "docker", "hostname": "h",
         "capacity": {"s" * 65: "1"}},
    ]
    for case in cases:
        with pytest.raises(msgspec.ValidationError):
            decode_report(msgspec.json.encode(case))


def test_legitimate_values_decode() -> None:
    base = {"agent_id": "a" * MAX_ID_CHARS, "observed_at": NOW, "kernel_id": "k" * MAX_ID_CHARS,
            "session_id": "s" * MAX_ID_CHARS}
    legitimate = [
        KernelRunningReport(**base, container_id="0123456789abcdef" * 4),  # Docker's
        KernelRunningReport(**base, container_id=f"sim-{'k' * MAX_ID_CHARS}"),  # the simulated backend's
        KernelRunningReport(**base, container_id="proc-4194304"),  # the process backend's
        KernelExitedReport(**base, detail="é" * MAX_DETAIL_CHARS),
        *(KernelExitedReport(**base, reason=reason.value) for reason in Reason),
        KernelProgressReport(**base, detail="Downloading 3/7 layers, 120 MB of 300 MB"),
        AgentStarted(agent_id="a1", observed_at=NOW, backend="simulated", hostname="node-1.cluster.example.org",
                     capacity={"cpu": Decimal(64), "mem": Decimal(2**40), "cuda.device": Decimal(8)},
                     resource_group="default"),
    ]
    for report in legitimate:
        assert decode_report(encode_report(report)) == report


def test_the_largest_report_the_bounds_let_through_fits_the_reports_stream() -> None:
    for type_name, data in largest_reports():
        decode_report(data)  # within every bound
        assert len(data) + MSG_ID_ALLOWANCE <= REPORTS_MAX_MSG_SIZE, f"{type_name}: {len(data)} bytes"
