"""Fault suite, CI size (issue 13 item 5): while a load of signed createSession / terminateSession runs
through the public API on simulated agents, SIGKILL relay, controller and scheduler; stop PostgreSQL
and start it again; restart NATS; SIGKILL for good an agent running as its own process (its sessions
end with reason agent-lost after the controller's heartbeat timeout and the lost agent's grace, 5 s
each here, and count as converged); SIGKILL for good one node of a 3-node NATS cluster whose streams
have 3 replicas. Each scenario on a fresh instance with a PostgreSQL of its own.

The full-size version (≥ 1,000 sessions, every service) is ``python -m ops.faults``. After each fault:
every session converged, `berth doctor` clean, every stored event in EVENTS exactly once, read models
equal to a rebuild. Waits are on conditions with deadlines; the moments of the kills are random
(seeded), and each kill waits for `berth up` to have started the killed service again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.bench.soak_report import format_table
from ops.faults.report import format_outcomes
from ops.faults.scenarios import Load, run_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LOAD = Load(rounds=2, sessions=40, clients=8, agents=3, timeout=120.0, kills=1, down=3.0)




@pytest.mark.parametrize("fault", ["sigkill relay+controller+scheduler",
                                   "postgresql stop/start", "nats restart", "agent lost for good",
                                   "nats cluster node lost"])
async def test_fault_mid_load_loses_nothing(fault: str, tmp_path: Path) -> None:
    progress: list[str] = []
    outcome = await run_scenario(fault, tmp_path, LOAD, progress.append)
    detail = (f"{format_outcomes([outcome])}\n{format_table(outcome.soak)}\ninjected: {outcome.injected}\n"
              f"problems: {outcome.problems} {outcome.soak.problems}\n{outcome.verdict}\n\nprogress:\n"
              + "\n".join(progress[-40:]))
    assert outcome.injected and not outcome.problems, detail
    assert outcome.converged == outcome.requested == LOAD.rounds * LOAD.sessions, detail
    assert outcome.verdict.doctor_clean, detail
    assert outcome.verdict.ledger.clean, detail
    assert outcome.verdict.drift == [], detail
    if fault == "agent lost for good":
        assert sum(r.agent_lost for r in outcome.soak.rounds) > 0, detail
