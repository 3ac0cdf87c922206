"""A service's process runs with the collector set for a long-running process (``services.common.gc_tuning``),
and the contracts' values (events, commands, reports) stay out of its collections."""

from __future__ import annotations

import datetime as dt
import gc
import importlib
import pkgutil
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import msgspec

import contracts
from contracts.catalog import decode_event, encode_event
from contracts.envelope import Metadata
from contracts.mounts import MountSpec
from contracts.session import KernelSpec, SessionRequested, SessionSpec
from services.common.gc_tuning import THRESHOLDS

ROOT = Path(__file__).resolve().parents[2]

_SERVICE = """
import asyncio, gc
from services.common.entrypoint import run_until_signalled

async def run(settings, stop):
    print(gc.get_threshold(), gc.get_freeze_count() > 0)

run_until_signalled("probe", run, needs=(), health=False)
"""


def test_a_service_starts_with_its_start_frozen_and_collections_spaced() -> None:
    out = subprocess.run([sys.executable, "-c", _SERVICE], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "BERTH_LOG_LEVEL": "WARNING"}, check=True).stdout
    assert out.split("\n")[0] == f"{THRESHOLDS} True"


def _contract_structs() -> list[type[msgspec.Struct]]:
    for module in pkgutil.iter_modules(contracts.__path__):
        importlib.import_module(f"contracts.{module.name}")
    found: set[type[msgspec.Struct]] = set()
    stack = [msgspec.Struct]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                stack.append(sub)
    return [cls for cls in found if cls.__module__.split(".")[0] == "contracts"]


def test_no_struct_of_the_contracts_is_tracked_by_the_collector() -> None:
    structs = _contract_structs()
    assert len(structs) > 100  # every event, command and report type
    assert sorted(cls.__qualname__ for cls in structs if cls.__struct_config__.gc) == []


def test_a_decoded_event_holding_lists_is_left_out_of_collections() -> None:
    event = SessionRequested(
        event_id=uuid.UUID(int=1), originator_id="s1", originator_version=1,
        timestamp=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), metadata=Metadata(actor="AKIA", correlation_id="c1"),
        owner="AKIA",
        spec=SessionSpec(name="n", image="python", kernels=[KernelSpec(kernel_id="k0", slots={"cpu": Decimal(1)})],
                         mounts=[MountSpec(folder_id="f" * 32, name="data", volume="local", target="/home/work/data")]),
    )
    decoded = decode_event(encode_event(event))
    assert decoded == event
    assert not any(gc.is_tracked(value) for value in (
        decoded, decoded.metadata, decoded.spec, decoded.spec.kernels[0], decoded.spec.mounts[0]))
    assert gc.is_tracked(decoded.spec.kernels)  # a list is tracked: nothing it holds refers back to it
