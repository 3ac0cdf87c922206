"""Sessions in real containers through `berth up` with the Docker backend and the CLI.

`berth session create` → RUNNING in a real, limited container → `berth session rm` →
the container is gone; a batch session that exits 3 and one that is OOM-killed end with
their exit code and reason recorded.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiodocker
import pytest

from tests.e2e.conftest import RunningBerth, berth_env, running
from tests.support.docker_backend import release_io_mounts, remove_agent_containers
from tests.support.images import kernel_image
from tests.support.waiting import wait_for

__all__ = ["kernel_image"]

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

MIB = 1024**2


def _containers(agent_id: str, session_id: str) -> list[dict]:
    async def query() -> list[dict]:
        docker = aiodocker.Docker()
        try:
            filters = json.dumps({"label": [f"berth.agent_id={agent_id}", f"berth.session_id={session_id}"]})
            return [await c.show() for c in await docker.containers.list(all=True, filters=filters)]
        finally:
            await docker.close()

    return asyncio.run(query())


@pytest.fixture
def docker_berth(tmp_path: Path, pg_dsn: str, kernel_image: str) -> Iterator[tuple[RunningBerth, str]]:
    """A running Berth whose agent (a fresh id) runs kernels in Docker containers."""
    agent_id = f"e2e-{uuid.uuid4().hex[:8]}"
    env = berth_env(tmp_path / "berth", BERTH_PG_DSN=pg_dsn, BERTH_AGENT_BACKEND="docker",
                    BERTH_AGENT_ID=agent_id, BERTH_DOCKER_STOP_GRACE="2")
    try:
        with running(tmp_path / "berth", env) as berth:
            yield berth, agent_id
    finally:
        asyncio.run(remove_agent_containers(agent_id))
        release_io_mounts(tmp_path)


def test_a_session_runs_in_a_real_container(docker_berth: tuple[RunningBerth, str], kernel_image: str) -> None:
    berth, agent_id = docker_berth
    created = berth.berth_json("session", "create", "-i", kernel_image, "-r", "cpu=0.5,mem=256m")
    session_id = created["id"]
    assert created["status"] == "RUNNING", berth.log_text()
    (container,) = _containers(agent_id, session_id)
    assert container["State"]["Running"]
    assert container["HostConfig"]["NanoCpus"] == 500_000_000
    assert container["HostConfig"]["Memory"] == container["HostConfig"]["MemorySwap"] == 256 * MIB
    assert container["HostConfig"]["NetworkMode"] == "none"

    berth.berth("session", "rm", session_id)
    info = berth.berth_json("session", "info", session_id)
    assert info["status"] == "TERMINATED"
    assert _containers(agent_id, session_id) == []


def test_batch_sessions_record_exit_codes_and_oom_kills(docker_berth: tuple[RunningBerth, str], kernel_image: str) -> None:
    berth, _ = docker_berth
    failing = berth.berth_json("session", "create", "-i", kernel_image, "-t", "batch",
                               "--startup-command", "echo bye; exit 3", "--no-wait")
    hog = berth.berth_json("session", "create", "-i", kernel_image, "-t", "batch", "-r", "cpu=1,mem=256m",
                           "--startup-command", "python3 -c \"x = b'x' * (1024 ** 3)\"", "--no-wait")

    def ended(session_id: str) -> dict | None:
        info = berth.berth_json("session", "info", session_id)
        return info if info["status"] in ("TERMINATED", "ERROR") else None

    failed = wait_for(lambda: ended(failing["id"]), timeout=60, interval=0.5, message=berth.log_text())
    assert failed["statusReason"] == "task-failed", failed
    assert failed["kernels"][0]["exitCode"] == 3, failed
    killed = wait_for(lambda: ended(hog["id"]), timeout=60, interval=0.5, message=berth.log_text())
    assert killed["statusReason"] == "oom-killed", killed
