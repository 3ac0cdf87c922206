"""The checks after a fault, on a running `berth up` whose load has ended: `berth doctor` clean (waited
for, within a deadline: a restarted service may still be catching up), every stored event in EVENTS once,
and read models equal to a fresh rebuild (``berth projections rebuild``)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Mapping

import psycopg

from ops.faults.ledger import Ledger, read_ledger, table_drift
from projections.rebuild import dump_read_models

__all__ = ["Verdict", "judge"]

BERTH = [sys.executable, "-m", "services.cli"]
DOCTOR_POLL = 1.0


@dataclass
class Verdict:
    doctor_clean: bool
    doctor_output: str
    ledger: Ledger
    drift: list[str] = field(default_factory=list)  # read-model tables that differ from a rebuild
    clean_at: float = 0.0  # time.monotonic() when doctor was first clean

    @property
    def clean(self) -> bool:
        return self.doctor_clean and self.ledger.clean and not self.drift


def _berth(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BERTH, *args], env=dict(env), capture_output=True, text=True, timeout=120)


async def judge(env: Mapping[str, str], instance: Mapping[str, object], timeout: float) -> Verdict:
    """Waits (at most ``timeout`` s) for `berth doctor` to be clean, then compares the event store with
    EVENTS and the read models with a rebuild of them."""
    started = time.monotonic()
    while True:
        doctor = await asyncio.to_thread(_berth, env, "doctor")
        if doctor.returncode == 0 or time.monotonic() - started > timeout:
            break
        await asyncio.sleep(DOCTOR_POLL)
    clean_at = time.monotonic()
    dsn = str(instance["pg_dsn"])
    ledger = await read_ledger(str(instance["nats_url"]), str(instance.get("nats_creds") or ""), dsn)
    with psycopg.connect(dsn) as conn:
        before = dump_read_models(conn)
    rebuilt = await asyncio.to_thread(_berth, env, "projections", "rebuild")
    with psycopg.connect(dsn) as conn:
        after = dump_read_models(conn)
    drift = table_drift(before, after) if rebuilt.returncode == 0 else [f"rebuild failed: {rebuilt.stderr[-500:]}"]
    return Verdict(doctor.returncode == 0, doctor.stdout + doctor.stderr, ledger, drift, clean_at)
