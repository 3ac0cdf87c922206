"""What `berth run`, `berth exec` and `berth logs -f` say about a session that is kept or that ends under them,
end to end through `berth up` with the process backend: `run -n NAME` hints by NAME (it gave the id), a run
whose session is ended elsewhere says so and is not "kept", and `logs -f` ends saying how the session ended
(it ended in silence)."""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.conftest import BERTH, RunningBerth
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

LOOP = "import time\nfor i in range(600):\n    print(i, flush=True)\n    time.sleep(0.2)\n"


def _started(berth: RunningBerth, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*BERTH, *args], env=berth.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _printed(proc: subprocess.Popen[str], text: str) -> bool:
    """Whether ``proc`` has printed a line holding ``text`` (reads its stdout up to it)."""
    assert proc.stdout is not None
    return text in proc.stdout.readline()


def test_a_session_kept_named_or_ended_under_its_program_is_said_so(process_berth: RunningBerth) -> None:
    berth = process_berth
    kept = berth.berth("run", "-n", "hint", "-c", "print(6*7)")
    assert kept.stdout == "42\n"
    assert "session hint kept: `berth exec hint CODE`, `berth session rm hint`" in kept.stderr, kept.stderr

    following = _started(berth, "logs", "-f", "hint")
    berth.berth("exec", "hint", "--detach", "echo tick; sleep 600")
    wait_for(lambda: _printed(following, "tick"), timeout=60, message="the log did not show tick")
    berth.berth("session", "rm", "hint")
    out, err = following.communicate(timeout=60)
    assert following.returncode == 0, (out, err)
    assert "berth: session hint ended: TERMINATED (user-requested)" in err, err

    running = _started(berth, "run", "-n", "cut", "-c", LOOP)
    wait_for(lambda: _printed(running, "3"), timeout=60, message="the program did not print")
    berth.berth("session", "rm", "cut")
    out, err = running.communicate(timeout=60)
    assert running.returncode != 0, (out, err)
    assert "berth: session cut ended under the run: TERMINAT" in err, err
    assert "kept" not in err and "berth exec cut" not in err, err
