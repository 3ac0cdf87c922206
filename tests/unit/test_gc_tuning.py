"""A service's process runs with the collector set for a long-running process (``services.common.gc_tuning``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
