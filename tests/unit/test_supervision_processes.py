"""Children: services as child processes, kept running and stopped within a bounded time; the
environment that carries the settings to them; several simulated agents in one process.

Real (tiny) processes: ``python -c`` children that print, sleep, ignore SIGTERM or exit."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from services.agent import fleet
from services.common.settings import Settings
from services.supervisor.processes import Child, Children, describe_exit
from services.supervisor.up import child_env, service_processes, with_storage_endpoint
from tests.support.waiting import async_wait_for, wait_for

ROOT = Path(__file__).resolve().parents[2]

POLITE = "import signal, sys, time\nprint('hello', flush=True)\nwhile True: time.sleep(1)"
DEAF = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('deaf', flush=True)\ntime.sleep(600)"
CRASH = "import sys\nprint('crashing', flush=True)\nsys.exit(3)"


def _child(name: str, code: str) -> Child:
    return Child(name, [sys.executable, "-c", code], os.environ)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


async def _started(children: Children, stop: asyncio.Event, lines: list[str]) -> asyncio.Task[list[str]]:
    task = asyncio.create_task(children.run(stop))
    await async_wait_for(lambda: all(c.pid for c in children.children) and len(lines) >= len(children.children),
                         timeout=20, message=f"the children did not start: {lines}")
    return task


async def test_output_is_prefixed_with_the_service_name_and_a_clean_stop_leaves_no_child() -> None:
    lines: list[str] = []
    children = Children([_child("a", POLITE), _child("long-name", POLITE)], grace=5, write=lines.append)
    stop = asyncio.Event()
    task = await _started(children, stop, lines)
    pids = [c.pid for c in children.children]
    began = time.monotonic()
    stop.set()
    assert await asyncio.wait_for(task, 10) == []
    assert time.monotonic() - began < 5
    assert sorted(lines) == ["a         | hello", "long-name | hello"]
    assert not any(_alive(pid) for pid in pids if pid)


async def test_a_child_killed_with_sigkill_is_restarted_and_its_end_logged(caplog: pytest.LogCaptureFixture) -> None:
    lines: list[str] = []
    child = _child("svc", POLITE)
    children = Children([child], grace=5, write=lines.append)
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO):
        task = await _started(children, stop, lines)
        first = child.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await async_wait_for(lambda: child.starts == 2 and child.pid and len(lines) == 2, timeout=20,
                             message=caplog.text)
        assert child.pid != first
        stop.set()
        assert await asyncio.wait_for(task, 10) == []
    assert "service svc exited with signal SIGKILL; restarting in 0.5s" in caplog.text


async def test_a_crashing_child_is_restarted_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    lines: list[str] = []
    child = _child("crash", CRASH)
    children = Children([child], grace=5, max_backoff=1.0, write=lines.append)
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO):
        task = asyncio.create_task(children.run(stop))
        await async_wait_for(lambda: child.starts >= 3, timeout=30, message=caplog.text)
        stop.set()
        assert await asyncio.wait_for(task, 10) == []
    assert "service crash exited with exit code 3; restarting in 0.5s" in caplog.text
    assert "service crash exited with exit code 3; restarting in 1.0s" in caplog.text
    assert "crash | crashing" in lines


async def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(caplog: pytest.LogCaptureFixture) -> None:
    lines: list[str] = []
    children = Children([_child("deaf", DEAF), _child("ok", POLITE)], grace=0.5, write=lines.append)
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING):
        task = await _started(children, stop, lines)
        pids = [c.pid for c in children.children]
        began = time.monotonic()
        stop.set()
        assert await asyncio.wait_for(task, 10) == ["deaf"]
    assert 0.5 <= time.monotonic() - began < 5
    assert "service deaf did not stop within 0s of the stop request; killing it" in caplog.text
    assert not any(_alive(pid) for pid in pids if pid)


def test_exits_are_described_for_people() -> None:
    assert describe_exit(1) == "exit code 1"
    assert describe_exit(-signal.SIGKILL) == "signal SIGKILL"


# ------------------------------------------------------------------ children end with their parent

PARENT = textwrap.dedent('''
    import asyncio, os, sys
    from services.supervisor.processes import Child, Children

    async def main():
        child = Child("sleeper", [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(600)"],
                      os.environ)
        children = Children([child], write=lambda line: print(line, flush=True))
        task = asyncio.create_task(children.run(asyncio.Event()))
        while child.pid is None:
            await asyncio.sleep(0.01)
        print("child", child.pid, flush=True)
        await task

    asyncio.run(main())
''')


def test_children_end_when_their_supervisor_is_sigkilled() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        # the child's own output may be forwarded before the parent prints its pid
        line = parent.stdout.readline()
        while line and not line.startswith("child "):
            line = parent.stdout.readline()
        assert line.startswith("child "), line
        pid = int(line.split()[1])
        assert _alive(pid)
        assert os.getpgid(pid) == pid  # a group of its own: a terminal's Ctrl-C reaches the supervisor alone
        parent.kill()
        parent.wait()
        wait_for(lambda: not _alive(pid), timeout=10, message=f"child {pid} outlived its supervisor")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


# ------------------------------------------------------------------ what berth up gives its children

def test_every_setting_reaches_a_child_as_it_is(tmp_path: Path) -> None:
    settings = Settings(nats_url="nats://127.0.0.1:4222", pg_dsn="postgresql://x@/berth?host=/tmp/pg",
                        data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", gateway_port=8123, agents=3,
                        agent_capacity="cpu=1000,mem=1000g", sim_delay=0.01, heartbeat_timeout=60.0,
                        agent_accelerators="", agent_backend="simulated")
    env = child_env(settings, base={"PATH": "/bin", "BERTH_LOG_LEVEL": "DEBUG", "BERTH_AGENTS": "7"})
    assert Settings.from_env(env) == settings
    assert (env["PATH"], env["BERTH_LOG_LEVEL"], env["PYTHONUNBUFFERED"]) == ("/bin", "DEBUG", "1")


def test_berth_up_runs_one_process_per_service_and_one_for_its_agents(tmp_path: Path) -> None:
    ready: list[str] = []
    settings = with_storage_endpoint(Settings(data_dir=tmp_path, agents=10, nats_url="nats://n", pg_dsn="pg"))
    children = service_processes(settings, ready.append)
    modules = {c.name: c.argv[-1] for c in children.children}
    assert modules == {"relay": "services.relay", "projector": "services.projector",
                       "scheduler": "services.scheduler", "controller": "services.controller",
                       "storage": "services.storage", "agents": "services.agent", "gateway": "services.gateway"}
    binds = {c.env["BERTH_STORAGE_BIND"] for c in children.children}
    (bind,) = binds
    assert not bind.endswith(":0")  # the storage port is fixed first: the gateway hands its URL out
    assert {c.env["BERTH_STORAGE_URL"] for c in children.children} == {f"http://{bind}"}
    envs = {c.env["BERTH_GATEWAY_PORT"] for c in children.children}
    assert len(envs) == 1 and envs != {"0"}  # one port, kept across the gateway's restarts
    assert {c.env["BERTH_AGENTS"] for c in children.children} == {"10"}
    gateway = next(c for c in children.children if c.name == "gateway")
    assert gateway.on_line is not None
    gateway.on_line("2026 INFO services.gateway.main: gateway serving GraphQL at http://127.0.0.1:1/graphql")
    gateway.on_line("Berth GraphQL: http://127.0.0.1:8123/graphql")
    assert ready == ["http://127.0.0.1:8123"]


# ------------------------------------------------------------------ several agents in one process

def test_several_agents_only_with_the_simulated_backend() -> None:
    assert [s.agent_id for s in fleet.fleet_settings(Settings(agents=3))] == ["local-1", "local-2", "local-3"]
    assert [s.agent_id for s in fleet.fleet_settings(Settings(agents=1))] == ["local"]
    with pytest.raises(ValueError, match="need the simulated backend"):
        fleet.fleet_settings(Settings(agents=2, agent_backend="docker"))


async def test_a_fleet_runs_every_agent_until_the_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    running: set[str] = set()

    async def agent(settings: Settings, stop: asyncio.Event) -> None:
        running.add(settings.agent_id)
        await stop.wait()
        running.discard(settings.agent_id)

    monkeypatch.setattr(fleet, "run_agent", agent)
    stop = asyncio.Event()
    task = asyncio.create_task(fleet.run_fleet(Settings(agents=3), stop))
    await async_wait_for(lambda: len(running) == 3)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert running == set()


async def test_a_failing_agent_stops_the_fleet_and_ends_its_process(monkeypatch: pytest.MonkeyPatch) -> None:
    stopped: list[str] = []

    async def agent(settings: Settings, stop: asyncio.Event) -> None:
        if settings.agent_id == "local-2":
            await asyncio.sleep(0.05)
            raise OSError("boom")
        await stop.wait()
        stopped.append(settings.agent_id)

    monkeypatch.setattr(fleet, "run_agent", agent)
    with pytest.raises(RuntimeError, match="agent local-2 failed"):
        await asyncio.wait_for(fleet.run_fleet(Settings(agents=3), asyncio.Event()), 5)
    assert sorted(stopped) == ["local-1", "local-3"]
