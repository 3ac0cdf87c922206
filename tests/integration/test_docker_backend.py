"""The Docker backend against a real engine: limits, isolation, destroy, adoption, images."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from pathlib import Path

import aiodocker
import pytest

from services.agent.backends.base import KernelStartError
from services.agent.backends.docker import DockerBackend
from services.agent.backends.docker import backend as backend_module
from services.agent.backends.docker.images import PresentImage
from services.agent.backends.docker.io_mount import mounted_under
from services.agent.backends.docker.spec import container_name
from tests.support.docker_backend import (
    Exits,
    agent_id,
    backend,
    exec_output,
    exits,
    launch,
    make_backend,
    release_io_mounts,
    remove_agent_containers,
    runner_dir,
)
from tests.support.images import kernel_image
from tests.support.kernel_dirs import age
from tests.support.waiting import async_wait_for

__all__ = ["agent_id", "backend", "exits", "kernel_image", "runner_dir"]

pytestmark = pytest.mark.docker

MIB = 1024**2


def _cpu_quota(text: str) -> tuple[int, int]:
    """Returns (quota, period) from cgroup v1 files or the v2 ``cpu.max`` line."""
    parts = text.split()
    return int(parts[0]), int(parts[1])


async def test_create_runs_an_isolated_container_with_the_slots_as_limits(backend: DockerBackend, kernel_image: str) -> None:
    request = launch(kernel_image, cpu="0.5", mem=256 * MIB, devices={"cuda.device": ["0", "1"]})
    kernel_id = request.kernel.kernel_id
    await backend.prepare(request.kernel)
    container_id = await backend.create(request)

    assert await backend.create(request) == container_id  # idempotent
    assert (await backend.list_running()) == {kernel_id: container_id}
    docker = aiodocker.Docker()
    try:
        info = await docker.containers.container(container_id).show()
        host = info["HostConfig"]
        assert info["Name"] == f"/{container_name(kernel_id)}"
        assert host["NetworkMode"] == "none"
        assert host["Privileged"] is False
        assert host["CapDrop"] == ["ALL"]
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert host["Memory"] == host["MemorySwap"] == 256 * MIB
        assert host["NanoCpus"] == 500_000_000
        assert host["PidsLimit"] == 1024
        labels = info["Config"]["Labels"]
        assert labels["berth.kernel_id"] == kernel_id
        assert labels["berth.session_id"] == request.kernel.session_id
        assert labels["berth.agent_id"] == backend.agent_id
        assert labels["berth.cluster_role"] == "main"
        env = dict(item.split("=", 1) for item in info["Config"]["Env"])
        assert env["BERTH_SESSION_ID"] == request.kernel.session_id
        assert env["BERTH_KERNEL_ID"] == kernel_id
        assert env["CUDA_VISIBLE_DEVICES"] == "0,1"
        assert env["BERTH_DEVICES_CUDA_DEVICE"] == "0,1"

        script = ("import os, pathlib; v1 = pathlib.Path('/sys/fs/cgroup/cpu/cpu.cfs_quota_us');"
                  "print(v1.read_text().strip(), pathlib.Path('/sys/fs/cgroup/cpu/cpu.cfs_period_us').read_text().strip())"
                  " if v1.exists() else print(pathlib.Path('/sys/fs/cgroup/cpu.max').read_text().strip())")
        quota, period = _cpu_quota(await exec_output(docker, container_id, "python3", "-c", script))
        assert quota / period == 0.5
        inside = await exec_output(docker, container_id, "sh", "-c", "echo $BERTH_SESSION_ID; pwd; ls /opt/berth/runner")
        assert inside.split() == [request.kernel.session_id, "/home/work", "berth_runner.py"]
    finally:
        await docker.close()
    assert backend.runner_socket(kernel_id) == backend.data_dir / "kernels" / kernel_id / "io" / "runner.sock"


async def test_destroy_stops_removes_and_keeps_the_log(backend: DockerBackend, exits: Exits, kernel_image: str) -> None:
    request = launch(kernel_image)
    kernel_id = request.kernel.kernel_id
    await backend.create(request)
    await async_wait_for(lambda: _logged(backend, kernel_id), timeout=20, message="runner never logged")

    assert await backend.destroy(kernel_id) == 0  # the placeholder runner exits 0 on SIGTERM
    assert kernel_id not in await backend.list_running()
    assert "placeholder runner up" in (backend.data_dir / "kernels" / kernel_id / "container.log").read_text()
    assert "placeholder runner up" in await backend.logs(kernel_id)
    assert await backend.destroy(kernel_id) == 0  # idempotent
    assert await backend.destroy("never-ran-here") is None

    # A kernel that exits afterwards is reported; the destroyed one never was.
    barrier = launch(kernel_image, startup_command="exit 3")
    await backend.create(barrier)
    await async_wait_for(lambda: barrier.kernel.kernel_id in exits.reports, timeout=30)
    assert kernel_id not in exits.reports


async def test_a_kernels_running_container_is_found_without_listing_the_agents_containers(
    backend: DockerBackend, exits: Exits, agent_id: str, tmp_path: Path, runner_dir: Path, kernel_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A start asks whether its kernel runs already (a redelivered assignment): one lookup by the
    kernel's name, the same cost however many kernels the agent runs; only a running container of
    this agent counts."""
    running = [launch(kernel_image) for _ in range(3)]
    ids = [await backend.create(request) for request in running]
    finished = launch(kernel_image, startup_command="exit 0")
    await backend.create(finished)
    await async_wait_for(lambda: finished.kernel.kernel_id in exits.reports, timeout=30)
    other = make_backend(f"{agent_id}-other", tmp_path / "other", runner_dir)
    theirs = launch(kernel_image)
    try:
        await other.create(theirs)
        lists = 0
        containers = backend._client().containers  # noqa: SLF001 - the engine calls are the point
        list_all = containers.list

        async def counted_list(*args, **kwargs):
            nonlocal lists
            lists += 1
            return await list_all(*args, **kwargs)

        monkeypatch.setattr(containers, "list", counted_list)
        for request, container_id in zip(running, ids):
            assert await backend.running_container(request.kernel.kernel_id) == container_id
        assert await backend.running_container(finished.kernel.kernel_id) is None, "exited: not running"
        assert await backend.running_container(theirs.kernel.kernel_id) is None, "another agent's container"
        assert await backend.running_container("never-ran-here") is None
        assert lists == 0
    finally:
        await other.close()
        await remove_agent_containers(f"{agent_id}-other")
        release_io_mounts(tmp_path / "other")


def _count_lookups(backend: DockerBackend, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Returns the list to which every container lookup by name of ``backend``'s engine client adds the name."""
    containers = backend._client().containers  # noqa: SLF001 - the engine calls are the point
    get, asked = containers.get, []

    async def counted(name: str, **kwargs):
        asked.append(name)
        return await get(name, **kwargs)

    monkeypatch.setattr(containers, "get", counted)
    return asked


async def test_a_first_start_asks_the_engine_about_no_container_before_creating_it(
    backend: DockerBackend, kernel_image: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whether the kernel runs already, and whether its container exists, are both answered on the node for a
    kernel never begun here: a start's critical path makes no lookup by name (it made two, 1.5-3.7 ms each
    while Docker creates other containers). A kernel begun here is still looked up."""
    asked = _count_lookups(backend, monkeypatch)
    request = launch(kernel_image)
    kernel_id = request.kernel.kernel_id
    assert await backend.running_container(kernel_id) is None
    container_id = await backend.create(request)
    assert asked == []
    assert await backend.running_container(kernel_id) == container_id
    assert await backend.create(request) == container_id  # a redelivered assignment
    assert asked == [container_name(kernel_id)] * 2


async def test_a_running_container_whose_kernel_directory_is_gone_is_found_by_its_name(
    backend: DockerBackend, kernel_image: str,
) -> None:
    """A kernel directory removed (by hand) while its container runs: the create's name conflict finds the
    container, which is returned, not replaced. (Another data directory is another Berth instance, whose
    containers are never this one's: ``test_docker_instances.py``.)"""
    request = launch(kernel_image, startup_command="sleep 600")  # a batch kernel: no io/ mount to release first
    container_id = await backend.create(request)
    shutil.rmtree(backend.data_dir / "kernels" / request.kernel.kernel_id)
    assert await backend.create(request) == container_id
    assert await backend.list_running() == {request.kernel.kernel_id: container_id}


async def test_an_ended_kernels_directory_goes_once_kept_past_the_retention_and_a_running_ones_stays(
    backend: DockerBackend, kernel_image: str,
) -> None:
    """An ended kernel's log and exit are kept a week (``BERTH_KERNEL_RETENTION``), not for good: a node's disk
    no longer fills with every kernel it ever ran. A kernel whose container runs keeps its directory."""
    ended, running = launch(kernel_image), launch(kernel_image)
    await backend.create(ended)
    container_id = await backend.create(running)
    await backend.destroy(ended.kernel.kernel_id)
    roots = {request.kernel.kernel_id: backend.data_dir / "kernels" / request.kernel.kernel_id
             for request in (ended, running)}
    for root in roots.values():
        age(root, 8)
    assert await backend.sweep() == [ended.kernel.kernel_id]  # its first look finds every directory there
    assert not roots[ended.kernel.kernel_id].exists()
    assert roots[running.kernel.kernel_id].is_dir()
    assert await backend.running_container(running.kernel.kernel_id) == container_id
    assert await backend.sweep() == []


async def _logged(backend: DockerBackend, kernel_id: str) -> bool:
    return "placeholder runner up" in await backend.logs(kernel_id)


async def test_a_restarted_agent_adopts_its_running_containers(
    backend: DockerBackend, agent_id: str, tmp_path: Path, runner_dir: Path, kernel_image: str
) -> None:
    request = launch(kernel_image)
    kernel_id = request.kernel.kernel_id
    container_id = await backend.create(request)
    await backend.close()  # the agent dies; its container must not

    restarted = make_backend(agent_id, backend.data_dir, runner_dir)
    collected = Exits()
    collected.start(restarted)
    try:
        assert await restarted.list_running() == {kernel_id: container_id}
        assert await restarted.create(request) == container_id  # a redelivered assignment
        barrier = launch(kernel_image, startup_command="exit 0")
        await restarted.create(barrier)
        await async_wait_for(lambda: barrier.kernel.kernel_id in collected.reports, timeout=30)
        assert collected.reports[barrier.kernel.kernel_id] == (0, "task-finished")
        assert await restarted.list_running() == {kernel_id: container_id}
        assert kernel_id not in collected.reports
    finally:
        await collected.stop()
        await restarted.close()


async def test_an_unknown_image_is_a_start_error(backend: DockerBackend, kernel_image: str) -> None:
    request = launch("berth-test/no-such-image:never")
    with pytest.raises(KernelStartError, match="not found on this agent, and pulling is off"):
        await backend.prepare(request.kernel)
    with pytest.raises(KernelStartError, match="not found on this agent, and pulling is off"):
        await backend.create(request)  # a start without prepare makes the image present first, as prepare does
    assert await backend.list_running() == {}


def _count_inspects(backend: DockerBackend, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Returns the list to which every image inspect of ``backend``'s engine client adds its image."""
    images = backend._client().images  # noqa: SLF001 - the engine calls are the point
    inspect, asked = images.inspect, []

    async def counted(name: str) -> dict:
        asked.append(name)
        return await inspect(name)

    monkeypatch.setattr(images, "inspect", counted)
    return asked


async def test_a_start_asks_the_engine_about_an_image_only_the_first_time(
    backend: DockerBackend, kernel_image: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked = _count_inspects(backend, monkeypatch)
    for _ in range(3):
        request = launch(kernel_image)
        await backend.prepare(request.kernel)
        await backend.create(request)
    assert asked == [kernel_image]
    assert len(await backend.list_running()) == 3


async def test_an_image_removed_since_a_start_found_it_is_made_present_again(
    backend: DockerBackend, kernel_image: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A container create that finds a remembered image gone has it pulled again (here: a pull
    that tags it again, no registry being reachable) and creates the container; when it cannot be
    had, the start fails naming the image, and leaves no socket directory mounted."""
    docker = backend._client()  # noqa: SLF001 - the engine calls are the point
    repository, tag = "berth-test/vanishing", uuid.uuid4().hex[:12]
    image = f"{repository}:{tag}"
    await docker.images.tag(kernel_image, repository, tag=tag)
    try:
        first = launch(image)
        await backend.prepare(first.kernel)
        await backend.create(first)
        await backend.destroy(first.kernel.kernel_id)
        await docker.images.delete(image)
        pulls: list[str] = []

        async def pulled_again(engine: aiodocker.Docker, name: str, *args: object, **kwargs: object) -> PresentImage:
            pulls.append(name)
            await engine.images.tag(kernel_image, repository, tag=tag)
            return PresentImage(pulled=True, volumes=())

        monkeypatch.setattr(backend_module, "ensure_image", pulled_again)
        second = launch(image)
        await backend.prepare(second.kernel)
        assert pulls == [], "remembered as present: not asked again before the create"
        assert await backend.create(second) and pulls == [image]
        assert second.kernel.kernel_id in await backend.list_running()
        await backend.destroy(second.kernel.kernel_id)

        monkeypatch.undo()  # the real one: not present, and this backend never pulls
        await docker.images.delete(image)
        third = launch(image)
        await backend.prepare(third.kernel)
        with pytest.raises(KernelStartError, match=f"{image}.* not found on this agent"):
            await backend.create(third)
        assert mounted_under(backend.data_dir) == []
    finally:
        with contextlib.suppress(aiodocker.DockerError):
            await docker.images.delete(image)


async def test_an_interactive_kernel_needs_the_runner(agent_id: str, tmp_path: Path, kernel_image: str) -> None:
    backend = make_backend(agent_id, tmp_path / "data", tmp_path / "no-runner")
    try:
        with pytest.raises(KernelStartError, match="runner"):
            await backend.create(launch(kernel_image))
        assert await backend.list_running() == {}
    finally:
        await backend.close()


async def test_a_runner_that_dies_at_once_fails_the_start(
    agent_id: str, tmp_path: Path, exits: Exits, backend: DockerBackend, kernel_image: str
) -> None:
    broken = tmp_path / "broken-runner"
    broken.mkdir()
    (broken / "berth_runner.py").write_text("print('runner broken'); raise SystemExit(2)\n")
    backend.runner_dir = broken
    request = launch(kernel_image)
    with pytest.raises(KernelStartError, match="runner broken"):
        await backend.create(request)
    assert await backend.list_running() == {}
    assert request.kernel.kernel_id not in exits.reports
