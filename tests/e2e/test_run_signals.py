"""`berth run --rm` ended from outside (``timeout``, a cancelled CI job, a closed terminal) still removes its session.

Found by trying Berth as a tenant: `timeout 120 berth run --rm ...` ended by SIGTERM left its session RUNNING, holding
the keypair's whole quota (Python's default for SIGTERM and SIGHUP ended the process before its cleanup)."""

from __future__ import annotations

import signal
import subprocess

import pytest

from tests.e2e.conftest import BERTH, RunningBerth
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def berth(process_berth: RunningBerth) -> RunningBerth:
    """A running Berth whose agent runs kernels as local processes (``process_berth``)."""
    return process_berth


def _status(berth: RunningBerth, name: str) -> str:
    return berth.berth_json("session", "info", name)["status"]  # type: ignore[index]


def _ended_by(berth: RunningBerth, sig: signal.Signals, name: str, *args: str, after: str) -> str:
    """Starts `berth run --rm -n NAME ARGS`, sends ``sig`` once ``after`` is on its stream, and returns its
    stderr; asserts it exited with 128 + the signal."""
    stream = "stdout" if after == "go\n" else "stderr"
    running = subprocess.Popen([*BERTH, "run", "--rm", "-n", name, *args], env=berth.env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        source = running.stdout if stream == "stdout" else running.stderr
        assert source is not None
        while after not in (line := source.readline()):
            assert line, f"`berth run` ended before {after!r}"
        running.send_signal(sig)
        _, err = running.communicate(timeout=60)
    finally:
        if running.poll() is None:
            running.kill()
            running.wait()
    assert running.returncode == 128 + sig, err
    return err


def test_sigterm_while_the_program_runs_terminates_the_session(berth: RunningBerth) -> None:
    code = "import time\nprint('go', flush=True)\ntime.sleep(600)"
    err = _ended_by(berth, signal.SIGTERM, "running", "-c", code, after="go\n")
    assert "termination requested" in err, err
    wait_for(lambda: _status(berth, "running") == "TERMINATED", timeout=60,
             message="`berth run --rm` ended by SIGTERM left its session running")


def test_sighup_while_the_session_waits_cancels_it(berth: RunningBerth) -> None:
    err = _ended_by(berth, signal.SIGHUP, "waiting", "-r", "cpu=100000", "-c", "print(1)", after="requested")
    assert "termination requested" in err, err
    wait_for(lambda: _status(berth, "waiting") == "CANCELLED", timeout=60,
             message="`berth run --rm` ended by SIGHUP left its session pending (it would start later)")
