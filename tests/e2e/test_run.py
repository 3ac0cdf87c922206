"""`berth run`, `berth exec` and `berth logs` end to end through `berth up` with the process backend."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from tests.e2e.conftest import BERTH, RunningBerth
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def berth(process_berth: RunningBerth) -> RunningBerth:
    """A running Berth whose agent runs kernels as local processes (``process_berth``)."""
    return process_berth


def kernel_pids(berth: RunningBerth) -> list[str]:
    return [p.parent.name for p in (berth.data_dir / "kernels").glob("*/runner.pid")]


def test_berth_run_prints_and_exits_with_the_program_status(berth: RunningBerth) -> None:
    assert "process backend: code in sessions runs as user" in berth.log_text()  # said at start: unisolated
    assert "UNISOLATED" in berth.log_text()
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
    done = berth.berth("run", "--exec", "echo hi", "extra", check=False)  # a command holds its own arguments
    assert done.returncode == 2 and "--exec CMD takes no further arguments" in done.stderr
    done = berth.berth("run", "nosuch.py", "x", check=False)
    assert done.returncode == 2 and "File 'nosuch.py' does not exist" in done.stderr


def test_a_file_runs_with_its_arguments_as_python_runs_it(berth: RunningBerth, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("import argparse, sys\nparser = argparse.ArgumentParser()\n"
                      "parser.add_argument('--epochs', type=int, default=1)\nparser.add_argument('name', nargs='?')\n"
                      "print(sys.argv, parser.parse_args())\n")
    done = berth.berth("run", "--rm", str(script), "--epochs", "3", "bob")  # after FILE: the script's, not berth's
    assert done.stdout == "['train.py', '--epochs', '3', 'bob'] Namespace(epochs=3, name='bob')\n", done.stderr
    done = berth.berth("run", "--rm", str(script))
    assert done.stdout == "['train.py'] Namespace(epochs=1, name=None)\n", done.stderr
    wrong = berth.berth("run", "--rm", str(script), "--bogus", check=False)
    assert wrong.returncode == 2 and "train.py: error: unrecognized arguments: --bogus" in wrong.stderr
    code = berth.berth("run", "--rm", "-c", "import sys; print(sys.argv)", "a", "--b")  # as python -c CODE ARGS
    assert code.stdout == "['-c', 'a', '--b']\n", code.stderr


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


def test_exec_runs_a_file_or_stdin_given_with_f(berth: RunningBerth, tmp_path: Path) -> None:
    session_id = berth.berth("session", "create").stdout.strip()
    step = tmp_path / "step.py"
    step.write_text("x = globals().get('x', 40) + 1\nprint(x)\n")
    assert berth.berth("exec", session_id, "-f", str(step)).stdout == "41\n"  # the file's text, not its name
    piped = subprocess.run([*BERTH, "exec", session_id, "-f", "-"], input=step.read_text(), env=berth.env,
                           capture_output=True, text=True, timeout=90)
    assert (piped.returncode, piped.stdout) == (0, "42\n"), piped.stderr  # the same namespace
    neither = berth.berth("exec", session_id, check=False)
    assert neither.returncode == 2 and "give the code to run: CODE, or -f FILE" in neither.stderr
    both = berth.berth("exec", session_id, "print(1)", "-f", str(step), check=False)
    assert both.returncode == 2 and "not both" in both.stderr
    stdin_twice = berth.berth("exec", session_id, "-f", "-", "--stdin", "-", check=False)
    assert stdin_twice.returncode == 2 and "both read our stdin" in stdin_twice.stderr
    berth.berth("session", "rm", session_id)


def test_ctrl_c_on_exec_interrupts_the_run_and_shows_where_it_stopped(berth: RunningBerth) -> None:
    """The first Ctrl-C interrupts the run and waits for its end: Python's KeyboardInterrupt is shown."""
    session_id = berth.berth("session", "create").stdout.strip()
    running = subprocess.Popen([*BERTH, "exec", session_id, "import time\nprint('go', flush=True)\ntime.sleep(600)"],
                               env=berth.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert running.stdout is not None and running.stdout.readline() == "go\n"
        running.send_signal(signal.SIGINT)
        _, err = running.communicate(timeout=60)
    finally:
        if running.poll() is None:
            running.kill()
            running.wait()
    assert running.returncode == 130, err
    assert "interrupting the run" in err and err.endswith("KeyboardInterrupt\n"), err
    assert 'File "<run 1>", line ' in err and "berth_worker" not in err, "where it stopped, not the worker's frames"
    assert berth.berth("exec", session_id, "print('free')").stdout == "free\n", "the kernel took the next run"


def test_logs_follow_prints_what_is_added_and_ends_with_the_session(berth: RunningBerth) -> None:
    session_id = berth.berth("session", "create").stdout.strip()
    follower = subprocess.Popen([*BERTH, "logs", "-f", "--poll", "0.2", session_id], env=berth.env,
                                stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(follower.stdout or []), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("listening" in line for line in list(lines)), timeout=30,
                 message="the follower did not print the log so far")
        # the process backend's kernel log is runner.log next to its working directory
        berth.berth("exec", "--exec", session_id, "echo followed-line-1 >> ../runner.log")
        berth.berth("exec", "--exec", session_id, "echo followed-line-2 >> ../runner.log")
        wait_for(lambda: "followed-line-2\n" in list(lines), timeout=30, message="the follower missed new lines")
        berth.berth("session", "rm", session_id)
        assert follower.wait(timeout=30) == 0, "following ends when the session has ended"
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    reader.join(timeout=10)
    printed = [line for line in lines if line.startswith("followed-line-")]
    assert printed == ["followed-line-1\n", "followed-line-2\n"], "each line once, in order"
