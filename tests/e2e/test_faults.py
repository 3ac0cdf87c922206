"""Fault suite, CI size (issue 13 item 5): SIGKILL of relay, controller and scheduler while a load of
signed createSession / terminateSession runs through the public API on simulated agents.

The full-size version (≥ 1,000 sessions, every service) is ``python -m ops.faults``. After the faults:
every session converged, `berth doctor` clean, every stored event in EVENTS exactly once, read models
equal to a rebuild. Waits are on conditions with deadlines; the moments of the kills are random
(seeded), and each waits for `berth up` to have started the killed service again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Iterator

import pytest

from ops.bench.soak_driver import Endpoint, run_soak
from ops.bench.soak_report import format_table
from ops.faults.kills import KillPlan, kill_services
from ops.faults.verdict import judge
from tests.e2e.conftest import RunningBerth, berth_env, running

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROUNDS, SESSIONS, CLIENTS, AGENTS = 2, 40, 8, 3
PHASE_TIMEOUT = 120  # seconds per phase of the load
RECOVERY_TIMEOUT = 120  # seconds for doctor to be clean once the load has ended


@pytest.fixture
def fault_berth(tmp_path: Path, pg_dsn: str) -> Iterator[RunningBerth]:
    env = berth_env(tmp_path / "berth", BERTH_PG_DSN=pg_dsn, BERTH_AGENTS=str(AGENTS),
                    BERTH_AGENT_CAPACITY="cpu=1000,mem=1000g")
    with running(tmp_path / "berth", env) as berth:
        yield berth


async def test_sigkill_of_relay_controller_scheduler_mid_load_loses_nothing(fault_berth: RunningBerth) -> None:
    assert fault_berth.proc is not None
    instance = fault_berth.instance()
    endpoint = Endpoint(str(instance["gateway_url"]), str(instance["access_key"]), str(instance["secret_key"]))
    progress: list[str] = []
    plan = KillPlan(services=["relay", "controller", "scheduler"], times=1, delay=0.5, gap=1.0)
    killer = asyncio.create_task(kill_services(fault_berth.proc.pid, plan, asyncio.Event(), progress.append))
    result = await run_soak(endpoint, rounds=ROUNDS, sessions=SESSIONS, clients=CLIENTS, timeout=PHASE_TIMEOUT,
                            log=fault_berth.log, say=progress.append,
                            alive=lambda: fault_berth.proc is not None and fault_berth.proc.poll() is None)
    await killer
    verdict = await judge(fault_berth.env, instance, RECOVERY_TIMEOUT)
    detail = (f"{format_table(result)}\nkills: {plan.kills}\nkill problems: {plan.problems}\n{verdict}\n\nprogress:\n"
              + "\n".join(progress[-40:]) + f"\n\nberth up log (tail):\n{fault_berth.log_text()[-4000:]}")
    assert [k.service for k in plan.kills] and not plan.problems, detail
    assert sorted(k.service for k in plan.kills) == ["controller", "relay", "scheduler"], detail
    for rnd in result.rounds:
        assert len(rnd.ids) == SESSIONS and rnd.converged, detail
        assert rnd.reached_running == SESSIONS, detail
    assert verdict.doctor_clean, detail
    assert verdict.ledger.clean, detail
    assert verdict.drift == [], detail
