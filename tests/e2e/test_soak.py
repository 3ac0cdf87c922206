"""Soak, CI size: overlapping rounds of concurrent create / RUNNING / terminate through signed GraphQL.

`berth up` on three simulated agents (no Docker needed); the scenario is ``ops/bench/soak_driver.py``,
the one ``ops/bench/soak.py`` runs at full size. Every session of every round must converge and
``doctor`` be clean. Timing is not asserted here (a busy CI machine does not control it); the
script checks that no round is more than 1.5x slower than the first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from ops.bench.soak_driver import Endpoint, run_soak
from ops.bench.soak_report import format_table
from tests.e2e.conftest import RunningBerth, berth_env, running

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROUNDS, SESSIONS, CLIENTS, AGENTS = 3, 40, 8, 3
PHASE_TIMEOUT = 90  # seconds per phase (creations, RUNNING, terminations, final convergence)


@pytest.fixture
def soak_berth(tmp_path: Path, pg_dsn: str) -> Iterator[RunningBerth]:
    env = berth_env(tmp_path / "berth", BERTH_PG_DSN=pg_dsn, BERTH_AGENTS=str(AGENTS),
                    BERTH_AGENT_CAPACITY="cpu=1000,mem=1000g")
    with running(tmp_path / "berth", env) as berth:
        yield berth


async def test_overlapping_rounds_all_converge_and_doctor_is_clean(soak_berth: RunningBerth) -> None:
    instance = soak_berth.instance()
    endpoint = Endpoint(str(instance["gateway_url"]), str(instance["access_key"]), str(instance["secret_key"]))
    progress: list[str] = []
    result = await run_soak(
        endpoint, rounds=ROUNDS, sessions=SESSIONS, clients=CLIENTS, timeout=PHASE_TIMEOUT,
        log=soak_berth.log, say=progress.append, alive=lambda: soak_berth.proc is not None and soak_berth.proc.poll() is None,
    )
    table = format_table(result)
    print(table)
    detail = f"{table}\n\nprogress:\n" + "\n".join(progress[-40:]) + f"\n\nberth up log (tail):\n{soak_berth.log_text()[-4000:]}"
    assert len(result.rounds) == ROUNDS, detail
    for rnd in result.rounds:
        assert len(rnd.ids) == SESSIONS and rnd.converged, detail
        assert rnd.reached_running == SESSIONS and sum(rnd.statuses.values()) == SESSIONS, detail
    assert result.doctor_clean, detail
    assert not result.problems, detail
