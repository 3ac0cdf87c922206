"""`berth run`, `berth exec` and `berth logs` end to end through `berth up` with the process backend."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.conftest import RunningBerth, berth_env, running
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def berth(tmp_path: Path, pg_dsn: str) -> Iterator[RunningBerth]:
    """A running Berth whose agent runs kernels as local processes."""
    data = tmp_path / "berth"
    with running(data, berth_env(data, BERTH_PG_DSN=pg_dsn, BERTH_AGENT_BACKEND="process")) as started:
        yield started
    for pid_file in (data / "kernels").glob("*/runner.pid"):  # runners outlive their agent, as containers do
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)


def kernel_pids(berth: RunningBerth) -> list[str]:
    return [p.parent.name for p in (berth.data_dir / "kernels").glob("*/runner.pid")]


def test_berth_run_prints_and_exits_with_the_program_status(berth: RunningBerth) -> None:
    done = berth.berth("run", "--rm", "-c", "import os; print(os.cpu_count())")
    assert re.fullmatch(r"\d+\n", done.stdout), done.stdout
    assert "RUNNING" in done.stderr

    done = berth.berth("run", "--rm", "-c", "raise SystemExit(3)", check=False)
    assert done.returncode == 3, done.stderr

    done = berth.berth("run", "--rm", "-c", "import sys; print('oops', file=sys.stderr); 1/0", check=False)
    assert done.returncode == 1
    assert "oops\n" in done.stderr and "ZeroDivisionError" in done.stderr and done.stdout == ""

    done = berth.berth("run", "--rm", "--exec", "echo from-shell; exit 5", check=False)
    assert (done.returncode, done.stdout) == (5, "from-shell\n")
    wait_for(lambda: not kernel_pids(berth), timeout=30, message="--rm left kernels running")


def test_berth_run_without_code_is_a_usage_error(berth: RunningBerth) -> None:
    done = berth.berth("run", check=False)
    assert done.returncode == 2 and "exactly one of" in done.stderr


def test_exec_keeps_the_namespace_logs_and_events_show_the_runs(berth: RunningBerth) -> None:
    session_id = berth.berth("session", "create").stdout.strip()
    assert berth.berth("exec", session_id, "x = 41").stdout == ""
    assert berth.berth("exec", session_id, "print(x + 1)").stdout == "42\n"
    assert berth.berth("exec", session_id, "raise SystemExit(4)", check=False).returncode == 4
    assert berth.berth("exec", "--exec", session_id, "echo $BERTH_SESSION_ID").stdout == f"{session_id}\n"

    assert "listening" in berth.berth("logs", session_id).stdout

    def runs() -> list[dict]:
        events = berth.berth_json("events", session_id)
        assert isinstance(events, list)
        return [e for e in events if e["type"] == "session.execution_finished"]

    recorded = wait_for(lambda: len(runs()) == 4 and runs(), timeout=20, message="the runs were not recorded")
    assert len({e["actor"] for e in recorded}) == 1

    berth.berth("session", "rm", session_id)
    done = berth.berth("exec", session_id, "print(1)", check=False)
    assert done.returncode == 1 and "not RUNNING" in done.stderr
