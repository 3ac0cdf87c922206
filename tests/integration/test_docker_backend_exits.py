"""Kernels that exit by themselves in a real engine: OOM kills, exit codes, missed exits."""

from __future__ import annotations

from pathlib import Path

import aiodocker
import pytest

from services.agent.backends.docker import DockerBackend
from services.agent.backends.docker.spec import container_name
from tests.support.docker_backend import (
    Exits,
    agent_id,
    backend,
    exits,
    launch,
    make_backend,
    runner_dir,
)
from tests.support.images import kernel_image
from tests.support.waiting import async_wait_for

__all__ = ["agent_id", "backend", "exits", "kernel_image", "runner_dir"]

pytestmark = pytest.mark.docker

MIB = 1024**2


async def _gone(kernel_id: str) -> bool:
    docker = aiodocker.Docker()
    try:
        await docker.containers.get(container_name(kernel_id))
        return False
    except aiodocker.DockerError as exc:
        return exc.status == 404
    finally:
        await docker.close()


async def test_a_memory_hog_is_oom_killed_and_reported(backend: DockerBackend, exits: Exits, kernel_image: str) -> None:
    hog = launch(kernel_image, mem=256 * MIB, startup_command="python3 -c \"x = b'x' * (1024 ** 3)\"")
    await backend.create(hog)
    kernel_id = hog.kernel.kernel_id
    await async_wait_for(lambda: kernel_id in exits.reports, timeout=60, message="the hog was not reported")
    exit_code, reason = exits.reports[kernel_id]
    assert reason == "oom-killed"
    assert exit_code == 137
    await async_wait_for(lambda: _gone(kernel_id), timeout=10)
    assert await backend.destroy(kernel_id) == 137  # the exit is remembered after removal


async def test_a_batch_command_calls_python_by_the_name_users_know(backend: DockerBackend, exits: Exits,
                                                                  kernel_image: str) -> None:
    """`python train.py`, as the help's example and users' scripts say it (exit 127 when the image
    had `python3` only)."""
    task = launch(kernel_image, startup_command="python -c 'import sys; sys.exit(7)'")
    await backend.create(task)
    await async_wait_for(lambda: task.kernel.kernel_id in exits.reports, timeout=30)
    assert exits.reports[task.kernel.kernel_id] == (7, "task-failed")


async def test_an_exit_code_is_reported_and_the_log_kept(backend: DockerBackend, exits: Exits, kernel_image: str) -> None:
    task = launch(kernel_image, startup_command="echo working; echo oops >&2; exit 3")
    await backend.create(task)
    kernel_id = task.kernel.kernel_id
    await async_wait_for(lambda: kernel_id in exits.reports, timeout=30)
    assert exits.reports[kernel_id] == (3, "task-failed")
    await async_wait_for(lambda: _gone(kernel_id), timeout=10)
    log = await backend.logs(kernel_id)
    assert "working" in log and "oops" in log
    assert kernel_id not in await backend.list_running()


async def test_a_kernel_stopped_from_outside_berth_says_so(backend: DockerBackend, exits: Exits,
                                                           kernel_image: str) -> None:
    """`docker stop`, or the engine restarting without live-restore: the session ended `task-failed`
    (exit 143) with nothing to say why, as if its code had failed."""
    kernel = launch(kernel_image)
    await backend.create(kernel)
    kernel_id = kernel.kernel.kernel_id
    docker = aiodocker.Docker()
    try:
        await docker.containers.container(container_name(kernel_id)).kill(signal="SIGKILL")  # docker kill
    finally:
        await docker.close()
    await async_wait_for(lambda: kernel_id in exits.reports, timeout=30, message="the stop was not reported")
    assert exits.reports[kernel_id] == (137, "task-failed")
    detail = exits.details[kernel_id]
    assert detail is not None and "ended by SIGKILL (exit 137), which Berth did not send" in detail, detail
    assert "live-restore" in detail


async def test_exits_missed_while_the_agent_was_down_are_reported_on_restart(
    backend: DockerBackend, agent_id: str, runner_dir: Path, kernel_image: str
) -> None:
    task = launch(kernel_image, startup_command="exit 5")
    kernel_id = task.kernel.kernel_id
    await backend.create(task)  # no watch runs: the agent is "down"
    docker = aiodocker.Docker()
    try:
        container = docker.containers.container(container_name(kernel_id))
        await async_wait_for(lambda: _exited(container), timeout=30)
    finally:
        await docker.close()

    restarted = make_backend(agent_id, backend.data_dir, runner_dir)
    collected = Exits()
    collected.start(restarted)
    try:
        await async_wait_for(lambda: kernel_id in collected.reports, timeout=30)
        assert collected.reports[kernel_id] == (5, "task-failed")
    finally:
        await collected.stop()
        await restarted.close()


async def _exited(container: aiodocker.containers.DockerContainer) -> bool:
    return (await container.show())["State"]["Status"] == "exited"
