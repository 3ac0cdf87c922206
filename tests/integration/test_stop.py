"""Stop means stop: `berth up` ends every service and child within a bounded time, whatever is
stuck, and leaves no service process, nats-server, postgres or kernel runner behind even when it
is SIGKILLed; a service process that dies is started again.

Real processes throughout: `berth up` with its embedded NATS and PostgreSQL, a frozen database
(SIGSTOP) as the stuck condition, and small supervisors run with ``python -c``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator

import pytest

from services.supervisor.up import DEADLINE
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
Process = tuple[int, str]  # (pid, start time): a PID alone may be reused


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm_end = text.rindex(")")
    return [text[: comm_end + 1], *text[comm_end + 2:].split()]


def descendants(pid: int) -> dict[Process, str]:
    """Returns every process below ``pid`` (from /proc/<pid>/task/*/children), with its name."""
    found: dict[Process, str] = {}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                pids = [int(p) for p in children.read_text().split()]
            except OSError:
                continue
            for child in pids:
                fields = _stat(child)
                if fields is not None:  # the name from the same read: the child may exit just after it
                    found[(child, fields[20])] = fields[0][fields[0].index("(") + 1: -1]
                    todo.append(child)
    return found


def alive(process: Process) -> bool:
    """True while the process runs (a zombie, or a new process with the same PID, is not it)."""
    pid, started = process
    fields = _stat(pid)
    return fields is not None and fields[1] not in ("Z", "X") and fields[20] == started


def survivors(processes: dict[Process, str]) -> dict[Process, str]:
    return {p: name for p, name in processes.items() if alive(p)}


class Up:
    """A `berth up --backend simulated` subprocess with embedded NATS and PostgreSQL."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.log = data_dir.parent / f"{data_dir.name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}  # no BERTH_NATS_URL / _PG_DSN
        env["BERTH_SIM_DELAY"] = "0.01"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "up", "--backend", "simulated", "--data-dir", str(data_dir)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._ready, timeout=120, message=f"berth up did not become ready; log:\n{self.text()}")
        self.children = descendants(self.proc.pid)
        names = set(self.children.values())
        assert {"nats-server", "postgres"} <= names, f"no embedded servers among {self.children}"
        assert set(self.services()) == set(SERVICES), f"not one process per service: {self.services()}"

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"berth up exited with {self.proc.returncode}; log:\n{self.text()}")
        return (self.data_dir / "instance.json").exists()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def pids(self, name: str) -> list[int]:
        return [pid for (pid, _), comm in self.children.items() if comm == name]

    def services(self) -> dict[str, int]:
        """The service processes running now (``python -m services.<name>``): name → PID."""
        found = {}
        for pid, _ in descendants(self.proc.pid):
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if b"-m" in argv and argv.index(b"-m") + 1 < len(argv):
                    module = argv[argv.index(b"-m") + 1].decode()
                    if module.startswith("services.") and module != "services.cli":
                        found[module.removeprefix("services.")] = pid
        return found

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"berth up still runs {timeout:.0f}s after the signal; log:\n{self.text()}") from None

    def assert_no_child_left(self, timeout: float) -> None:
        wait_for(lambda: not survivors(self.children), timeout=timeout,
                 message=f"left behind: {survivors(self.children)}; log:\n{self.text()[-3000:]}")


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    berth = Up(tmp_path / "berth")
    try:
        yield berth
    finally:
        for pid in berth.pids("postgres"):  # thaw what a test froze, so that it can end
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if berth.proc.poll() is None:
            berth.proc.kill()
            berth.proc.wait()


def freeze(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)


SERVICES = ("gateway", "relay", "projector", "scheduler", "controller", "storage", "agent")


@pytest.mark.slow
def test_sigkill_leaves_no_service_nats_server_nor_postgres_behind(up: Up) -> None:
    up.proc.kill()
    assert up.wait(10) == -signal.SIGKILL
    up.assert_no_child_left(timeout=20)


@pytest.mark.slow
def test_sigterm_stops_every_service_and_child(up: Up) -> None:
    up.proc.send_signal(signal.SIGTERM)
    assert up.wait(DEADLINE + 10) == 0
    up.assert_no_child_left(timeout=5)
    assert "Berth stopped." in up.text()
    assert not (up.data_dir / "instance.json").exists()


@pytest.mark.slow
def test_a_service_process_killed_with_sigkill_is_started_again(up: Up) -> None:
    relay = up.services()["relay"]
    os.kill(relay, signal.SIGKILL)
    wait_for(lambda: up.services().get("relay") not in (None, relay), timeout=30,
             message=f"the relay was not started again; log:\n{up.text()[-3000:]}")
    assert "service relay exited with signal SIGKILL; restarting in" in up.text()
    assert (up.data_dir / "instance.json").exists()
    up.proc.send_signal(signal.SIGTERM)
    assert up.wait(DEADLINE + 10) == 0
    assert not up.services()


@pytest.mark.slow
def test_a_frozen_database_does_not_hold_the_stop(up: Up) -> None:
    freeze(up.pids("postgres"))  # every store call now blocks a thread inside psycopg, forever
    up.proc.send_signal(signal.SIGTERM)
    assert up.wait(DEADLINE + 15) == 1
    text = up.text()
    assert "did not stop within" in text
    assert "Berth did not stop within" in text or "threads still running after the stop" in text
    assert not (up.data_dir / "instance.json").exists()
    assert not survivors({p: n for p, n in up.children.items() if n == "nats-server"})
    for pid in up.pids("postgres"):  # the halt's signals wait for the thaw
        os.kill(pid, signal.SIGCONT)
    up.assert_no_child_left(timeout=20)


@pytest.mark.slow
def test_a_second_signal_ends_it_at_once(up: Up) -> None:
    freeze(up.pids("postgres"))
    up.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "stopping every service" in up.text(), timeout=10, message=up.text())
    up.proc.send_signal(signal.SIGINT)
    assert up.wait(10) == 128 + signal.SIGINT
    assert "SIGINT again: ending Berth at once" in up.text()
    for pid in up.pids("postgres"):
        os.kill(pid, signal.SIGCONT)
    up.assert_no_child_left(timeout=20)


# ------------------------------------------------------------------ the process backend's runners

RUNNER_PARENT = textwrap.dedent('''
    import asyncio, sys
    from decimal import Decimal
    from pathlib import Path
    from contracts.agent import KernelAssigned
    from contracts.envelope import Metadata, utc_now
    from services.agent.backends.base import KernelLaunch
    from services.agent.backends.process import ProcessBackend

    async def main():
        kernel = KernelAssigned(
            event_id="e1", originator_id="local", originator_version=1, timestamp=utc_now(),
            metadata=Metadata(actor="test", correlation_id="c"), kernel_id="k1", session_id="s1",
            image="berth/python:latest", slots={"cpu": Decimal(1)})
        backend = ProcessBackend(Path(sys.argv[1]))
        print(await backend.create(KernelLaunch(kernel=kernel, env={})), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
''')


def test_kernel_runners_end_with_the_process_that_started_them(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", RUNNER_PARENT, str(tmp_path)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line.startswith("proc-"), line
        runner = int(line.removeprefix("proc-"))
        children = descendants(parent.pid)
        assert runner in {pid for pid, _ in children}
        parent.kill()
        parent.wait()
        wait_for(lambda: not survivors(children), timeout=15, message=f"left behind: {survivors(children)}")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


# ------------------------------------------------------------------ the stop machinery on its own

SUPERVISOR = textwrap.dedent('''
    import asyncio, logging, sys, threading
    from services.common.process_exit import exit_if_threads_stuck
    from services.supervisor.stopping import StopGuard, run_loop
    from services.supervisor.supervision import Service, supervise

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
    mode, deadline = sys.argv[1], float(sys.argv[2])

    async def polite(stop):
        await stop.wait()

    async def stuck(stop):
        if mode == "thread":
            await asyncio.to_thread(threading.Event().wait)  # a thread blocked for good
        elif mode == "loop":
            threading.Event().wait()  # blocks the event loop itself

    async def main(stop):
        asyncio.get_running_loop().call_soon(lambda: print("ready", flush=True))
        return await supervise([Service("polite", polite), Service("stuck", stuck if mode != "clean" else polite)],
                               stop, grace=0.5, cancel_grace=0.5)

    guard = StopGuard(deadline)
    guard.install()
    guard.add_halt(lambda: print("halted", flush=True))
    late = run_loop(main, guard)
    print("late:", late, flush=True)
    exit_if_threads_stuck(0.5, 1 if late else 0)
''')


def _supervisor(tmp_path: Path, mode: str, deadline: float) -> tuple[subprocess.Popen[bytes], Path]:
    out = tmp_path / f"{mode}.log"
    with open(out, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", SUPERVISOR, mode, str(deadline)], cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT)
    wait_for(lambda: "ready" in out.read_text() or proc.poll() is not None, timeout=30)
    assert proc.poll() is None, out.read_text()
    return proc, out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_services_that_stop_end_the_process_cleanly(tmp_path: Path, sig: int) -> None:
    proc, out = _supervisor(tmp_path, "clean", deadline=60)
    proc.send_signal(sig)
    assert proc.wait(10) == 0, out.read_text()
    assert "late: []" in out.read_text()


def test_a_thread_blocked_for_good_does_not_hold_the_process(tmp_path: Path) -> None:
    proc, out = _supervisor(tmp_path, "thread", deadline=60)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 1, out.read_text()
    text = out.read_text()
    assert "service stuck did not stop within" in text
    assert "late: ['stuck']" in text
    assert "threads still running after the stop" in text


def test_a_blocked_event_loop_is_ended_at_the_deadline(tmp_path: Path) -> None:
    proc, out = _supervisor(tmp_path, "loop", deadline=2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 1, out.read_text()
    text = out.read_text()
    assert "did not stop within 2s of the stop request" in text
    assert "MainThread: wait" in text  # where the main thread is stuck
    assert "halted" in text


def test_a_second_signal_ends_a_blocked_process_at_once(tmp_path: Path) -> None:
    proc, out = _supervisor(tmp_path, "loop", deadline=60)
    proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "stopping every service" in out.read_text(), timeout=10, message=out.read_text())
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 128 + signal.SIGINT, out.read_text()
    assert "halted" in out.read_text()
