"""Two Berth instances on one Docker engine whose agents have the same id (every ``berth up`` calls its agent
``local``), each with its own data directory: neither lists, adopts, destroys nor reports the other's kernels,
also a kernel whose container an agent made before containers carried their instance (an upgrade)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest

from services.agent.backends.base import KernelStartError
from services.agent.backends.docker import DockerBackend
from services.agent.backends.docker.spec import KernelPaths, container_config, container_name
from services.agent.backends.private import private_dirs
from tests.support.docker_backend import Exits, agent_id, cleaned_up, launch, make_backend, runner_dir
from tests.support.images import kernel_image
from tests.support.waiting import async_wait_for

__all__ = ["agent_id", "kernel_image", "runner_dir"]

pytestmark = pytest.mark.docker

MADE = pytest.mark.parametrize("legacy", [False, True], ids=["labelled", "made-before-instance-labels"])
"""Each case for a kernel its instance's backend made, and for one an agent made before the upgrade."""


@pytest.fixture
async def first(agent_id: str, tmp_path: Path, runner_dir: Path) -> AsyncIterator[DockerBackend]:
    """The backend of the instance whose kernels run (its containers, and the second's, removed afterwards)."""
    async with cleaned_up(make_backend(agent_id, tmp_path / "first", runner_dir)) as instance:
        yield instance


@pytest.fixture
async def second(agent_id: str, tmp_path: Path, runner_dir: Path) -> AsyncIterator[DockerBackend]:
    """The backend of another instance on the same engine, its agent with the same id."""
    async with cleaned_up(make_backend(agent_id, tmp_path / "second", runner_dir)) as instance:
        yield instance


async def _start(backend: DockerBackend, image: str, *, legacy: bool = False) -> tuple[str, str]:
    """Starts a kernel that sleeps on ``backend``; ``legacy``: its container as an agent made it before containers
    carried their instance (no such label, its ``io/`` bound from the agent's kernels directory). Returns the
    kernel's id and its container's."""
    request = launch(image, startup_command="sleep 600")
    kernel_id = request.kernel.kernel_id
    if not legacy:
        return kernel_id, await backend.create(request)
    paths = KernelPaths.of(backend.data_dir, kernel_id)
    private_dirs(paths.root, paths.io)
    config = container_config(request, agent_id=backend.agent_id, paths=paths, runner_dir=backend.runner_dir,
                              user=backend.user, scratch=backend.scratch)
    config["Labels"].pop("berth.instance", None)
    docker = aiodocker.Docker()
    try:
        container = await docker.containers.run(config, name=container_name(kernel_id))
        return kernel_id, container.id
    finally:
        await docker.close()


async def _kill(container_id: str) -> None:
    """Kills the container (as ``docker kill`` would) and waits until the engine says it exited."""
    docker = aiodocker.Docker()
    try:
        container = docker.containers.container(container_id)
        await container.kill()

        async def exited() -> bool:
            return not (await container.show())["State"]["Running"]

        await async_wait_for(exited, timeout=30, message=f"container {container_id[:12]} did not exit")
    finally:
        await docker.close()


async def _present(container_id: str) -> bool:
    docker = aiodocker.Docker()
    try:
        await docker.containers.container(container_id).show()
        return True
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            return False
        raise
    finally:
        await docker.close()


@MADE
async def test_another_instance_neither_lists_adopts_nor_destroys_a_kernel(
        first: DockerBackend, second: DockerBackend, kernel_image: str, legacy: bool) -> None:
    kernel_id, container_id = await _start(first, kernel_image, legacy=legacy)

    assert await first.list_running() == {kernel_id: container_id}  # what its reconciliation adopts
    assert await first.running_container(kernel_id) == container_id
    assert await second.list_running() == {}  # so its reconciliation never takes it for an orphan
    with pytest.raises(KernelStartError, match="another Berth instance"):
        await second.destroy(kernel_id)  # by name, as an orphan is destroyed: refused, untouched
    assert await first.running_container(kernel_id) == container_id


@MADE
async def test_another_instance_neither_reports_nor_removes_a_kernel_that_exited(
        first: DockerBackend, second: DockerBackend, kernel_image: str, legacy: bool) -> None:
    missed_id, missed = await _start(first, kernel_image, legacy=legacy)  # exits before the second watches
    seen_id, seen = await _start(first, kernel_image, legacy=legacy)  # exits while the second watches
    late_id, late = await _start(first, kernel_image, legacy=legacy)  # exits while the first watches
    own = [await _start(second, kernel_image) for _ in range(2)]
    await _kill(missed)
    theirs, ours = Exits(), Exits()
    ours.start(second)
    try:
        await _kill(own[0][1])
        await async_wait_for(lambda: own[0][0] in ours.reports, timeout=60, message="its own exit was not reported")
        # the sweep at the watch's start (which found `missed` exited) has listed the containers by now
        await _kill(seen)
        await _kill(own[1][1])  # its die event comes after `seen`'s, and after that sweep's end
        await async_wait_for(lambda: own[1][0] in ours.reports, timeout=60, message="its own exit was not reported")
        assert sorted(ours.reports) == sorted(kernel for kernel, _ in own)
        assert await _present(missed) and await _present(seen)

        theirs.start(first)
        await async_wait_for(lambda: {missed_id, seen_id} <= set(theirs.reports), timeout=60,
                             message=f"the first instance did not report its own exits: {theirs.reports}")
        assert theirs.reports[missed_id][0] == theirs.reports[seen_id][0] == 137
        await _kill(late)  # after the first's sweep: its die event tells the first instance
        await async_wait_for(lambda: late_id in theirs.reports, timeout=60, message="its own exit was not reported")
        assert sorted(theirs.reports) == sorted([missed_id, seen_id, late_id])
        assert sorted(ours.reports) == sorted(kernel for kernel, _ in own)
    finally:
        await ours.stop()
        await theirs.stop()
