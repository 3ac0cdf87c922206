"""The runtime's must-shows end to end with a real Docker engine, through `berth up` and the CLI.

`berth run` prints from inside a real container and exits with the program's status; `berth
exec` keeps one namespace and sees the CPU quota in the container's cgroup (a memory hog run
there loses only the runner's worker); containers that
exit by themselves end their sessions with exit code and reason and free their slots; an agent
that is SIGKILLed and restarted while a kernel runs adopts the container, exec still works and
no duplicate kernel appears. (Create/rm, batch exit codes and the OOM reason are in
test_docker_session.py.)
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import aiodocker
import pytest

from tests.e2e.conftest import RunningBerth, berth_env, running
from tests.support.docker_backend import release_io_mounts, remove_agent_containers
from tests.support.images import kernel_image
from tests.support.waiting import wait_for

__all__ = ["kernel_image"]

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

CAPACITY = "cpu=2,mem=2g"
CFS_PERIOD_US = 100_000
QUOTA_PROBE = (
    "import os\n"
    "if os.path.exists('/sys/fs/cgroup/cpu.max'):\n"
    "    quota, period = open('/sys/fs/cgroup/cpu.max').read().split()\n"
    "else:\n"
    "    quota = open('/sys/fs/cgroup/cpu/cpu.cfs_quota_us').read().strip()\n"
    "    period = open('/sys/fs/cgroup/cpu/cpu.cfs_period_us').read().strip()\n"
    "print(quota, period)"
)


def _containers(session_id: str) -> list[dict]:
    """Returns the inspected containers (running or not) labelled with ``session_id``."""
    async def query() -> list[dict]:
        docker = aiodocker.Docker()
        try:
            filters = json.dumps({"label": [f"berth.session_id={session_id}"]})
            return [await c.show() for c in await docker.containers.list(all=True, filters=filters)]
        finally:
            await docker.close()

    return asyncio.run(query())


def _occupied(berth: RunningBerth, agent_id: str) -> dict[str, Decimal]:
    agents = berth.berth_json("agents", "ls")
    assert isinstance(agents, list)
    (agent,) = [a for a in agents if a["id"] == agent_id]
    return {slot: Decimal(str(amount)) for slot, amount in (agent["occupied"] or {}).items()}


def _slots_free(berth: RunningBerth, agent_id: str) -> bool:
    return all(amount == 0 for amount in _occupied(berth, agent_id).values())


def _ended(berth: RunningBerth, session_id: str) -> dict | None:
    info = berth.berth_json("session", "info", session_id)
    assert isinstance(info, dict)
    return info if info["status"] in ("TERMINATED", "ERROR") else None


def _session_id(stderr: str) -> str:
    found = re.search(r"session (\S+) requested", stderr)
    assert found, stderr
    return found.group(1)


def _docker_env(data: Path, pg_dsn: str, image: str, **extra: str) -> dict[str, str]:
    return berth_env(data, BERTH_PG_DSN=pg_dsn, BERTH_DEFAULT_IMAGE=image, BERTH_DOCKER_STOP_GRACE="2", **extra)


@pytest.fixture
def docker_berth(tmp_path: Path, pg_dsn: str, kernel_image: str) -> Iterator[tuple[RunningBerth, str]]:
    """A running Berth whose local agent (a fresh id) runs kernels in Docker containers."""
    agent_id = f"e2e-{uuid.uuid4().hex[:8]}"
    data = tmp_path / "berth"
    env = _docker_env(data, pg_dsn, kernel_image, BERTH_AGENT_BACKEND="docker",
                      BERTH_AGENT_ID=agent_id, BERTH_AGENT_CAPACITY=CAPACITY)
    try:
        with running(data, env) as berth:
            yield berth, agent_id
    finally:
        asyncio.run(remove_agent_containers(agent_id))
        release_io_mounts(tmp_path)


def test_berth_run_prints_from_a_real_container_and_exits_with_its_status(
        docker_berth: tuple[RunningBerth, str]) -> None:
    berth, agent_id = docker_berth
    done = berth.berth("run", "-c", "import os; print(os.cpu_count())")
    assert re.fullmatch(r"\d+\n", done.stdout), done
    session_id = _session_id(done.stderr)
    info = berth.berth_json("session", "info", session_id)
    assert isinstance(info, dict)
    (kernel,) = info["kernels"]
    (container,) = _containers(session_id)
    assert container["Id"] == kernel["containerId"] and container["State"]["Running"]
    assert container["Config"]["Labels"]["berth.agent_id"] == agent_id
    berth.berth("session", "rm", session_id)
    assert _containers(session_id) == []

    done = berth.berth("run", "--rm", "-c", "raise SystemExit(3)", check=False)
    assert done.returncode == 3, done.stderr
    session_id = _session_id(done.stderr)
    wait_for(lambda: _ended(berth, session_id), timeout=30, interval=0.5, message=berth.log_text())
    wait_for(lambda: _containers(session_id) == [], timeout=30, message="--rm left the container behind")


def test_exec_keeps_the_namespace_and_sees_the_cpu_quota(docker_berth: tuple[RunningBerth, str]) -> None:
    berth, _ = docker_berth
    session_id = berth.berth("session", "create", "-r", "cpu=0.5,mem=256m").stdout.strip()
    assert berth.berth("exec", session_id, "x = 41").stdout == ""
    assert berth.berth("exec", session_id, "print(x + 1)").stdout == "42\n"

    quota, period = berth.berth("exec", session_id, QUOTA_PROBE).stdout.split()
    assert int(quota) * 2 == int(period), (quota, period)  # cpu=0.5: half of every period
    assert len(_containers(session_id)) == 1

    # a hog in query mode: the OOM killer takes the runner's worker (SIGKILL), not the container
    hog = berth.berth("exec", session_id, "x = bytearray(1024**3)", check=False)
    assert hog.returncode == 128 + signal.SIGKILL, hog
    assert berth.berth("exec", session_id, "print('x' in globals())").stdout == "False\n"  # a fresh worker
    assert berth.berth_json("session", "info", session_id)["status"] == "RUNNING"
    berth.berth("session", "rm", session_id)


def test_containers_that_exit_by_themselves_end_their_sessions_and_free_their_slots(
        docker_berth: tuple[RunningBerth, str]) -> None:
    berth, agent_id = docker_berth
    batch = berth.berth_json("session", "create", "-t", "batch", "-r", "cpu=0.5,mem=256m",
                             "--startup-command", "exit 3", "--no-wait")
    hog = berth.berth_json("session", "create", "-t", "batch", "-r", "cpu=0.5,mem=256m",
                           "--startup-command", "python3 -c 'x = bytearray(1024**3)'", "--no-wait")
    interactive = berth.berth("session", "create", "-r", "cpu=0.5,mem=256m").stdout.strip()
    assert isinstance(batch, dict) and isinstance(hog, dict)
    assert not _slots_free(berth, agent_id)

    # docker-init (PID 1) hands SIGTERM to the runner, which exits 128 + 15
    killing = berth.berth("exec", "--exec", interactive, "kill 1", check=False)

    failed = wait_for(lambda: _ended(berth, batch["id"]), timeout=60, interval=0.5, message=berth.log_text())
    assert (failed["statusReason"], failed["kernels"][0]["exitCode"]) == ("task-failed", 3), failed
    killed = wait_for(lambda: _ended(berth, hog["id"]), timeout=60, interval=0.5, message=berth.log_text())
    assert (killed["statusReason"], killed["kernels"][0]["exitCode"]) == ("oom-killed", 128 + signal.SIGKILL), killed
    gone = wait_for(lambda: _ended(berth, interactive), timeout=60, interval=0.5,
                    message=f"{killing}\n{berth.log_text()}")
    assert gone["kernels"][0]["exitCode"] == 128 + signal.SIGTERM, gone  # the runner's exit on SIGTERM
    assert gone["statusReason"] in ("self-terminated", "task-failed"), gone

    wait_for(lambda: _slots_free(berth, agent_id), timeout=30, interval=0.5,
             message=f"slots not freed: {_occupied(berth, agent_id)}")


class SecondAgent:
    """An agent run as its own process (`python -m services.agent`) against a running Berth."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.env = env
        self.log = data_dir / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "services.agent"], env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def test_a_sigkilled_agent_restarts_adopts_its_container_and_exec_still_works(
        tmp_path: Path, pg_dsn: str, kernel_image: str) -> None:
    node = f"node2-{uuid.uuid4().hex[:6]}"
    data = tmp_path / "berth"
    berth = RunningBerth(data, _docker_env(data, pg_dsn, kernel_image, BERTH_AGENT_CAPACITY="cpu=0.1,mem=64m"))
    berth.start()
    agent: SecondAgent | None = None
    try:
        nats_url = berth.instance()["nats_url"]
        assert isinstance(nats_url, str)
        creds = tmp_path / f"{node}.creds"  # the bus is authenticated: the second node is enrolled first
        berth.berth("admin", "agent", "enrol", node, "--data-dir", str(data), "--file", str(creds))
        agent_env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
        agent_env.update({"BERTH_AGENT_ID": node, "BERTH_AGENT_BACKEND": "docker", "BERTH_NATS_URL": nats_url,
                          "BERTH_NATS_CREDS": str(creds),
                          "BERTH_DATA_DIR": str(tmp_path / "node2"), "BERTH_AGENT_CAPACITY": CAPACITY,
                          "BERTH_DOCKER_STOP_GRACE": "2"})
        agent = SecondAgent(tmp_path / "node2", agent_env)
        agent.start()
        wait_for(lambda: any(a["id"] == node and a["status"] == "ALIVE" for a in berth.berth_json("agents", "ls")),
                 timeout=60, interval=0.5, message=f"{node} did not register:\n{agent.log_text()}")

        created = berth.berth_json("session", "create", "-r", "cpu=0.5,mem=256m")
        assert isinstance(created, dict) and created["status"] == "RUNNING", (created, agent.log_text())
        session_id = created["id"]
        (kernel,) = berth.berth_json("session", "info", session_id)["kernels"]
        assert kernel["agentId"] == node
        (before,) = _containers(session_id)
        assert before["Id"] == kernel["containerId"]
        assert berth.berth("exec", session_id, "x = 1").stdout == ""

        agent.kill()
        agent.start()
        wait_for(lambda: agent.log_text().count(f"agent {node} started") == 2, timeout=60, interval=0.2,
                 message=f"{node} did not start again:\n{agent.log_text()}")
        assert berth.berth("exec", session_id, "print(x + 1)", timeout=120).stdout == "2\n", agent.log_text()
        (after,) = _containers(session_id)
        assert after["Id"] == before["Id"] and after["State"]["Running"], after["State"]
        assert after["State"]["StartedAt"] == before["State"]["StartedAt"]  # not restarted either
        info = berth.berth_json("session", "info", session_id)
        assert info["status"] == "RUNNING" and len(info["kernels"]) == 1, info
        assert info["kernels"][0]["containerId"] == before["Id"]

        berth.berth("session", "rm", session_id)
        assert berth.berth_json("session", "info", session_id)["status"] == "TERMINATED"
        wait_for(lambda: _containers(session_id) == [], timeout=30, message="the container outlived its session")
        wait_for(lambda: _slots_free(berth, node), timeout=30, interval=0.5,
                 message=f"slots not freed: {_occupied(berth, node)}")
    finally:
        if agent is not None:
            agent.stop()
        if berth.proc and berth.proc.poll() is None:
            berth.stop()
        asyncio.run(remove_agent_containers(node))
        release_io_mounts(tmp_path)
