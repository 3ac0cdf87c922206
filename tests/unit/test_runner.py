"""The kernel runner, run as a local subprocess on a temporary Unix socket."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.waiting import wait_for

RUNNER = Path(__file__).resolve().parents[2] / "services" / "agent" / "runner" / "berth_runner.py"


class RunnerClient:
    """One connection to a runner, speaking its newline-delimited JSON."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rw", encoding="utf-8")

    def send(self, message: dict) -> None:
        self.file.write(json.dumps(message) + "\n")
        self.file.flush()

    def receive(self) -> dict:
        line = self.file.readline()
        assert line, "the runner closed the connection"
        return json.loads(line)

    def run(self, code: str, mode: str = "query", run_id: str = "r", stdin: str | None = None,
            argv: list[str] | None = None) -> tuple[list[dict], dict]:
        """Returns the chunks of a run and its final ``done`` message."""
        self.send({"op": "run", "run_id": run_id, "mode": mode, "code": code, "stdin": stdin, "argv": argv})
        chunks = []
        while True:
            message = self.receive()
            if message.get("kind") == "done":
                return chunks, message
            assert message.get("kind") in ("stdout", "stderr"), message
            chunks.append(message)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def text(chunks: list[dict], kind: str) -> str:
    return "".join(c["data"] for c in chunks if c["kind"] == kind)


def start_runner(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    path = tmp_path / "io" / "runner.sock"
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.Popen([sys.executable, str(RUNNER), "--socket", str(path), *extra], cwd=work,
                            stderr=subprocess.DEVNULL)
    wait_for(lambda: path.exists() or proc.poll() is not None, timeout=10, message="the runner did not listen")
    assert proc.poll() is None, "the runner exited"
    return proc, path


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[RunnerClient]:
    proc, path = start_runner(tmp_path)
    client = RunnerClient(path)
    yield client
    client.close()
    proc.terminate()
    proc.wait(timeout=10)


def test_ping_answers_pong(runner: RunnerClient) -> None:
    runner.send({"op": "ping"})
    assert runner.receive()["op"] == "pong"


def test_the_socket_is_open_to_its_owner_only(tmp_path: Path) -> None:
    proc, path = start_runner(tmp_path)
    try:
        assert path.stat().st_mode & 0o777 == 0o600, "whoever can connect runs code in the kernel"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_namespace_persists_across_runs(runner: RunnerClient) -> None:
    _, done = runner.run("x = 41", run_id="a")
    assert done["exit_code"] == 0
    chunks, done = runner.run("print(x + 1)", run_id="b")
    assert text(chunks, "stdout") == "42\n"
    assert done == {"run_id": "b", "kind": "done", "exit_code": 0, "duration_ms": done["duration_ms"]}


def test_output_written_by_c_code_is_captured(runner: RunnerClient) -> None:
    chunks, _ = runner.run("import os; os.write(1, b'low\\n'); os.write(2, b'level\\n')")
    assert text(chunks, "stdout") == "low\n"
    assert text(chunks, "stderr") == "level\n"


def test_chunks_stream_before_the_run_ends(runner: RunnerClient, tmp_path: Path) -> None:
    # The run cannot go past its first line until the test has received that line as a chunk (it
    # waits for a file the test creates then), so a runner that sent output only at the end fails.
    release = tmp_path / "release"
    code = (
        "import os, time\n"
        "print(0)\n"
        "deadline = time.monotonic() + 20\n"
        f"while not os.path.exists({str(release)!r}):\n"
        "    if time.monotonic() > deadline:\n"
        "        print('never released')\n"
        "        break\n"
        "    time.sleep(0.01)\n"
        "print(1)\n"
    )
    runner.send({"op": "run", "run_id": "slow", "mode": "query", "code": code})
    first = runner.receive()
    release.touch()
    assert first["kind"] == "stdout" and first["data"].startswith("0")
    rest = []
    while (message := runner.receive())["kind"] != "done":
        rest.append(message)
    assert text([first, *rest], "stdout") == "0\n1\n", "the first chunk came only at the end"


def test_system_exit_gives_its_code(runner: RunnerClient) -> None:
    assert runner.run("raise SystemExit(3)")[1]["exit_code"] == 3
    assert runner.run("import sys; sys.exit()", run_id="b")[1]["exit_code"] == 0
    chunks, done = runner.run("raise SystemExit('bye')", run_id="c")
    assert (done["exit_code"], text(chunks, "stderr")) == (1, "bye\n")


def test_an_exception_prints_its_traceback_and_gives_1(runner: RunnerClient) -> None:
    chunks, done = runner.run("def f():\n    return 1 / 0\nf()\n")
    assert done["exit_code"] == 1
    err = text(chunks, "stderr")
    assert err.startswith("Traceback (most recent call last):\n")
    assert "ZeroDivisionError: division by zero" in err
    assert "berth_runner" not in err


def test_a_traceback_shows_the_lines_of_each_run_it_passes_through(runner: RunnerClient) -> None:
    """As IPython's cells: each run's code is ``<run N>``, its lines shown, those of a function an
    earlier run defined included; nothing of the worker's own."""
    assert runner.run("def f():\n    return 1 / 0\n", run_id="a")[1]["exit_code"] == 0
    code = "x = 1\ntry:\n    f()\nexcept ZeroDivisionError as e:\n    raise ValueError('x') from e\n"
    chunks, done = runner.run(code, run_id="b")
    err = text(chunks, "stderr")
    assert done["exit_code"] == 1
    assert 'File "<run 2>", line 3, in <module>\n    f()\n' in err
    assert 'File "<run 1>", line 2, in f\n    return 1 / 0\n' in err
    assert "direct cause" in err and err.endswith("ValueError: x\n")
    assert "berth_worker" not in err and "_run_query" not in err


def test_sys_argv_is_the_prompt_s_until_a_run_gives_one(runner: RunnerClient) -> None:
    """Not the worker's own options (`--control-fd N`: a script's argparse failed on them); a run's argv
    stays the namespace's, as `python FILE ARGS...` would set it."""
    chunks, done = runner.run("import argparse, sys; print(sys.argv, argparse.ArgumentParser().parse_args())")
    assert (text(chunks, "stdout"), done["exit_code"]) == ("[''] Namespace()\n", 0)
    runner.run("pass", argv=["train.py", "--epochs", "3"])
    chunks, _ = runner.run("print(sys.argv)")
    assert text(chunks, "stdout") == "['train.py', '--epochs', '3']\n"


def test_a_script_s_run_is_named_as_its_file(runner: RunnerClient) -> None:
    """`berth run train.py`: its traceback and `__file__` name the file, as `python train.py` would."""
    chunks, done = runner.run("import os\nprint(__file__)\n\n1 / 0\n", argv=["train.py"])
    assert done["exit_code"] == 1 and text(chunks, "stdout") == "train.py\n"
    assert 'File "train.py", line 4, in <module>\n    1 / 0\n' in text(chunks, "stderr")


def test_query_mode_reads_stdin_from_the_request(runner: RunnerClient) -> None:
    chunks, _ = runner.run("print(input().upper())", stdin="hello\n")
    assert text(chunks, "stdout") == "HELLO\n"


def test_batch_mode_runs_a_shell_command_with_stdin_in_the_work_dir(runner: RunnerClient, tmp_path: Path) -> None:
    chunks, done = runner.run("tr a-z A-Z; echo oops >&2; pwd; exit 4", mode="batch", stdin="hi\n")
    assert done["exit_code"] == 4
    assert text(chunks, "stdout") == f"HI\n{tmp_path / 'work'}\n"
    assert text(chunks, "stderr") == "oops\n"


def test_a_query_interrupt_raises_keyboard_interrupt(runner: RunnerClient) -> None:
    runner.send({"op": "run", "run_id": "loop", "mode": "query", "code": "print('go', flush=True)\nwhile True:\n    pass\n"})
    assert runner.receive()["data"].startswith("go")
    runner.send({"op": "interrupt", "run_id": "loop"})
    messages = []
    while (message := runner.receive()).get("kind") != "done":
        messages.append(message)
    assert {"op": "interrupted", "run_id": "loop", "ok": True} in messages
    assert message["exit_code"] == 130
    err = text([m for m in messages if "kind" in m], "stderr")
    assert err.endswith("KeyboardInterrupt\n"), err
    assert re.search(r'File "<run 1>", line [123], in <module>\n    \S', err), "the line it stopped at is shown"
    assert "berth_worker" not in err and "on_sigint" not in err, "the worker's own frames are left out"
    chunks, done = runner.run("print('still here')", run_id="after")
    assert (text(chunks, "stdout"), done["exit_code"]) == ("still here\n", 0)


def test_a_batch_interrupt_stops_the_process_group(runner: RunnerClient) -> None:
    runner.send({"op": "run", "run_id": "sleep", "mode": "batch", "code": "echo start; sleep 30; echo never"})
    assert runner.receive()["data"].startswith("start")
    other = RunnerClient(runner.path)
    try:
        other.send({"op": "interrupt", "run_id": "sleep"})
        assert other.receive()["ok"] is True
    finally:
        other.close()
    started = time.monotonic()
    while (message := runner.receive()).get("kind") != "done":
        assert message.get("data") != "never\n"
    # 130: the shell died of the SIGINT; 143: the runner escalated to SIGTERM because the group had
    # not ended within INTERRUPT_GRACE (a machine busy enough can delay a dying process that long).
    # Either way the interrupt stopped the run before its end.
    assert message["exit_code"] in (130, 143)
    assert time.monotonic() - started < 10


def test_interrupting_an_unknown_run_says_so(runner: RunnerClient) -> None:
    runner.send({"op": "interrupt", "run_id": "nope"})
    assert runner.receive() == {"op": "interrupted", "run_id": "nope", "ok": False}


def test_output_beyond_the_rate_waits_and_none_is_dropped(tmp_path: Path) -> None:
    proc, path = start_runner(tmp_path, "--output-rate", "100000")
    client = RunnerClient(path)
    try:
        started = time.monotonic()
        chunks, done = client.run("print('x' * 400000); print('tail')")
        elapsed = time.monotonic() - started
        assert text(chunks, "stdout") == "x" * 400000 + "\ntail\n" and done["exit_code"] == 0
        # A first second's worth goes at once; the rest no faster than the rate, but for one read past the
        # allowance (16 KiB) and what the pipes hold when the run ends (64 KiB each), drained at once.
        assert elapsed >= (400006 - 100000 - (16 << 10) - 2 * (64 << 10)) / 100000
        chunks, done = client.run("print('small')", run_id="b")
        assert text(chunks, "stdout") == "small\n" and "truncated" not in done
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


def test_the_default_rate_streams_three_mebibytes_whole(runner: RunnerClient) -> None:
    chunks, done = runner.run("import sys\nfor _ in range(3):\n    sys.stdout.write('y' * (1 << 20))\n", mode="query")
    assert done["exit_code"] == 0
    assert text(chunks, "stdout") == "y" * (3 << 20)


def test_a_shell_command_is_paced_as_python_is(tmp_path: Path) -> None:
    proc, path = start_runner(tmp_path, "--output-rate", "100000")
    client = RunnerClient(path)
    try:
        started = time.monotonic()
        chunks, done = client.run("head -c 400000 /dev/zero | tr '\\0' z", mode="batch")
        assert text(chunks, "stdout") == "z" * 400000 and done["exit_code"] == 0
        assert time.monotonic() - started >= (400000 - 100000 - (16 << 10) - 2 * (64 << 10)) / 100000
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


def test_a_dead_worker_gives_its_status_and_a_fresh_namespace(runner: RunnerClient) -> None:
    runner.run("x = 1", run_id="a")
    assert runner.run("import os; os._exit(7)", run_id="b")[1]["exit_code"] == 7
    chunks, _ = runner.run("print('x' in globals())", run_id="c")
    assert text(chunks, "stdout") == "False\n"


@pytest.mark.parametrize(
    "request_, message",
    [
        ({"op": "run", "mode": "query", "code": "1"}, "run_id"),
        ({"op": "run", "run_id": "r", "mode": "turbo", "code": "1"}, "unknown mode"),
        ({"op": "run", "run_id": "r", "code": 5}, "code"),
        ({"op": "run", "run_id": "r", "code": "1", "argv": "a b"}, "argv"),
        ({"op": "run", "run_id": "r", "code": "1", "argv": ["a", 1]}, "argv"),
        ({"op": "dance"}, "unknown op"),
    ],
)
def test_bad_requests_get_a_clear_error(runner: RunnerClient, request_: dict, message: str) -> None:
    runner.send(request_)
    reply = runner.receive()
    assert reply["kind"] == "error" and message in reply["message"]
    runner.send({"op": "ping"})
    assert runner.receive()["op"] == "pong"


def test_a_long_socket_path_works(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    proc, path = start_runner(deep)
    try:
        assert len(str(path)) > 108
        assert path.exists()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_sigterm_stops_the_runner_and_removes_its_socket(tmp_path: Path) -> None:
    proc, path = start_runner(tmp_path)
    proc.terminate()
    assert proc.wait(timeout=10) == 128 + 15
    assert not path.exists()


# A server that, while it is imported, takes a SIGTERM inside a finalizer: where Python prints an
# exception raised there and drops it, as it does in the weakref callback of an import's module lock,
# which is where CI's runner once took its SIGTERM, and went on serving.
SIGNALLED_IN_A_FINALIZER = """
import signal as _signal


class _Finalized:
    def __del__(self):
        _signal.raise_signal(_signal.SIGTERM)


_Finalized()
"""


def test_a_sigterm_taken_where_python_drops_exceptions_still_stops_the_runner(tmp_path: Path) -> None:
    runner_dir = tmp_path / "runner"
    shutil.copytree(RUNNER.parent, runner_dir)
    server = runner_dir / "berth_server.py"
    server.write_text(server.read_text() + SIGNALLED_IN_A_FINALIZER)
    path = tmp_path / "io" / "runner.sock"
    proc = subprocess.Popen([sys.executable, str(runner_dir / RUNNER.name), "--socket", str(path)], cwd=tmp_path,
                            stderr=subprocess.DEVNULL)
    try:
        assert proc.wait(timeout=30) == 128 + 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not path.exists()


def test_the_runner_listens_before_it_loads_its_server(tmp_path: Path) -> None:
    # The entry point binds and listens with the interpreter's own modules only; the server (its
    # protocol, json, subprocess, threads) is imported once the socket is there, so that its imports
    # overlap the report of the kernel's start instead of delaying it.
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); sys.argv[1:] = ['--socket', sys.argv[2]]\n"
        "import berth_runner\n"
        "loaded = set(sys.modules)\n"
        "server = berth_runner.listen(sys.argv[2])\n"
        "print(' '.join(sorted(loaded & {'berth_server', 'json', 'subprocess', 'threading', 'socket', 'select',"
        " 'argparse', 'enum', 're'})))\n"
    )
    path = tmp_path / "io" / "runner.sock"
    done = subprocess.run([sys.executable, "-I", "-S", "-c", probe, str(RUNNER.parent), str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
    assert path.exists()


def test_bad_arguments_are_refused_with_the_usage(tmp_path: Path) -> None:
    for args, message in ((["--output-rate", "1000"], "--socket is required"),
                          (["--socket", str(tmp_path / "s"), "--bogus"], "unknown argument '--bogus'"),
                          (["--socket", str(tmp_path / "s"), "--output-rate", "lots"], "--output-rate must be a positive"),
                          (["--socket", str(tmp_path / "s"), "--output-rate", "0"], "--output-rate must be a positive")):
        done = subprocess.run([sys.executable, str(RUNNER), *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert "usage: berth_runner.py --socket PATH" in done.stderr and message in done.stderr
        assert not (tmp_path / "s").exists()
