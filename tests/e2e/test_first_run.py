"""The README's two commands, as a new user runs them: `berth up` from an empty data directory with
the kernel image absent builds it (with progress, saying how long it took; the next start reuses
it), then `berth run -c "print(6*7)"` prints 42 from a real container, and a session of an image
that no registry has fails with a cause that names it. Without a Docker engine, `berth up` refuses
in one line saying how to get one.

The image is a tag of its own (`berth/python:e2e-<hex>`, removed afterwards), never the shared
`berth/python:latest`; its root filesystem comes from the cache (`~/.cache/berth`) when a build
left one there, else debootstrap runs (a minute or two).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import uuid
from pathlib import Path

import aiodocker
import pytest

from tests.e2e.conftest import BERTH, RunningBerth, berth_env
from tests.support.docker_backend import release_io_mounts, remove_agent_containers

pytestmark = pytest.mark.e2e

READY_TIMEOUT = 600
"""Seconds `berth up` may take to be ready when it has to debootstrap the image's root filesystem."""


def _remove_image(tag: str) -> None:
    async def remove() -> None:
        docker = aiodocker.Docker()
        try:
            await docker.images.delete(tag, force=True)
        except aiodocker.DockerError:
            pass
        finally:
            await docker.close()

    asyncio.run(remove())


def _present(tag: str) -> bool:
    async def inspect() -> bool:
        docker = aiodocker.Docker()
        try:
            await docker.images.inspect(tag)
            return True
        except aiodocker.DockerError:
            return False
        finally:
            await docker.close()

    return asyncio.run(inspect())


@pytest.mark.docker
def test_berth_up_builds_the_missing_image_and_berth_run_prints_from_a_container(tmp_path: Path, pg_dsn: str) -> None:
    tag = f"berth/python:e2e-{uuid.uuid4().hex[:10]}"
    agent_id = f"e2e-{uuid.uuid4().hex[:8]}"
    data = tmp_path / "berth"
    # The defaults a new user gets: backend and capacity auto.
    env = berth_env(data, BERTH_PG_DSN=pg_dsn, BERTH_AGENT_BACKEND="", BERTH_AGENT_CAPACITY="",
                    BERTH_DEFAULT_IMAGE=tag, BERTH_AGENT_ID=agent_id, BERTH_DOCKER_STOP_GRACE="2")
    assert not _present(tag)
    berth = RunningBerth(data, env)
    try:
        berth.start(timeout=READY_TIMEOUT)
        log = berth.log_text()
        assert f"kernel image {tag} is missing: making it now" in log, log
        assert re.search(rf"kernel image {re.escape(tag)} (built|imported) in \d+ s", log), log
        assert f"agent {agent_id} (docker backend) capacity auto (cpu=" in log, log

        done = berth.berth("run", "--rm", "-c", "print(6*7)")
        assert done.stdout == "42\n", done.stderr

        failed = berth.berth("run", "-i", "does-not-exist/image:1", "-c", "1", check=False, timeout=120)
        assert failed.returncode != 0 and failed.stdout == ""
        assert "did not start: ERROR (failed-to-start): image 'does-not-exist/image:1' not found" in failed.stderr, failed.stderr
        assert "berth exec" not in failed.stderr
        berth.berth("doctor")
        assert berth.bus_violations() == []  # each service and the agent ran under its own least privilege

        assert berth.stop() == 0
        berth.start()
        assert berth.log_text().count(f"kernel image {tag}: present") == 1, "the next start did not reuse the image"
    finally:
        if berth.proc is not None and berth.proc.poll() is None:
            berth.stop()
        asyncio.run(remove_agent_containers(agent_id))
        release_io_mounts(tmp_path)
        _remove_image(tag)


def test_without_docker_berth_up_refuses_in_one_line_that_says_how_to_get_it(tmp_path: Path) -> None:
    data = tmp_path / "berth"
    env = berth_env(data, BERTH_AGENT_BACKEND="", DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    done = subprocess.run([*BERTH, "up"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"berth up: no Docker engine answers ({tmp_path}/no-docker.sock does not exist)")
    assert "apt-get install docker.io" in line and "--backend process" in line
    assert "would run tenant code unisolated, as the operator" in line
    assert not (data / "nats").exists(), "it started something before refusing"
