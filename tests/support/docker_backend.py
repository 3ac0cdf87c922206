"""Fixtures and helpers for tests of the Docker backend against a real engine.

Each test gets its own agent id, so its containers are told apart by label and removed at
the end whatever happened; the runner is a placeholder script that prints a line and waits,
so the backend is tested without the real kernel runner.
"""

from __future__ import annotations

import contextlib

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiodocker
import pytest

from contracts.agent import KernelAssigned
from contracts.envelope import Metadata, utc_now
from contracts.mounts import MountSpec
from services.agent.backends.base import KernelLaunch
from services.agent.backends.docker import DockerBackend
from services.agent.backends.docker.io_mount import mounted_under, unmount_io
from services.agent.backends.docker.spec import LABEL_AGENT
from services.agent.kernels import launch_for

__all__ = [
    "PLACEHOLDER_RUNNER", "Exits", "cleaned_up", "exec_output", "launch", "make_backend", "release_io_mounts",
    "remove_agent_containers",
]

PLACEHOLDER_RUNNER = """\
import signal, socket, sys, time
server = socket.socket(socket.AF_UNIX)
server.bind(sys.argv[sys.argv.index("--socket") + 1])
server.listen()
print("placeholder runner up", sys.argv[1:], flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    time.sleep(3600)
"""


def launch(image: str, *, cpu: str = "1", mem: int = 256 * 1024**2, startup_command: str | None = None,
           devices: dict[str, list[str]] | None = None, mounts: list[MountSpec] | None = None) -> KernelLaunch:
    """Returns a launch of a new kernel of ``image`` with the given slots (and folder mounts)."""
    kernel_id = f"k{uuid.uuid4().hex[:12]}"
    assigned = KernelAssigned(
        event_id=uuid.uuid4(), originator_id="test-agent", originator_version=1, timestamp=utc_now(),
        metadata=Metadata(actor="test", correlation_id=kernel_id), kernel_id=kernel_id,
        session_id=f"s{uuid.uuid4().hex[:12]}", image=image,
        slots={"cpu": Decimal(cpu), "mem": Decimal(mem)}, startup_command=startup_command, mounts=mounts or [],
    )
    base = launch_for(assigned)
    return KernelLaunch(kernel=assigned, env=base.env, devices=devices or {})


def make_backend(agent_id: str, data_dir: Path, runner_dir: Path) -> DockerBackend:
    """Returns a Docker backend with a short stop grace that never pulls (no test asks a registry)."""
    return DockerBackend(agent_id, data_dir, grace=2, runner_dir=runner_dir, pull="never")


async def remove_agent_containers(agent_id: str) -> None:
    """Removes every container labelled with ``agent_id``."""
    docker = aiodocker.Docker()
    try:
        filters = json.dumps({"label": [f"{LABEL_AGENT}={agent_id}"]})
        for container in await docker.containers.list(all=True, filters=filters):
            try:
                await container.delete(force=True)
            except aiodocker.DockerError as exc:
                if exc.status not in (404, 409):  # gone, or being removed by the backend
                    raise
    finally:
        await docker.close()


def release_io_mounts(data_dir: Path) -> None:
    """Unmounts the kernels' ``io/`` tmpfs mounts under ``data_dir`` that a test's containers, removed
    behind the backend's back, left (a root agent mounts one per interactive kernel)."""
    for point in mounted_under(data_dir):
        unmount_io(point)


async def exec_output(docker: aiodocker.Docker, container_id: str, *cmd: str) -> str:
    """Runs ``cmd`` in the container (like ``docker exec``) and returns its output."""
    container = docker.containers.container(container_id)
    execution = await container.exec(list(cmd), stdout=True, stderr=True)
    out = b""
    async with execution.start(detach=False) as stream:
        while (message := await stream.read_out()) is not None:
            out += message.data
    return out.decode()


class Exits:
    """Collects what ``watch`` reports, with the watch running as a task."""

    def __init__(self) -> None:
        self.reports: dict[str, tuple[int | None, str]] = {}
        self.details: dict[str, str | None] = {}
        self.task: asyncio.Task | None = None

    async def __call__(self, kernel_id: str, exit_code: int | None, reason: str, detail: str | None = None) -> None:
        self.details[kernel_id] = detail
        self.reports[kernel_id] = (exit_code, reason)

    def start(self, backend: DockerBackend) -> None:
        self.task = asyncio.create_task(backend.watch(self))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
def agent_id() -> str:
    """Returns a fresh agent id for this test."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def runner_dir(tmp_path: Path) -> Path:
    """Returns a directory holding a placeholder ``berth_runner.py``."""
    path = tmp_path / "runner"
    path.mkdir()
    (path / "berth_runner.py").write_text(PLACEHOLDER_RUNNER)
    return path


@contextlib.asynccontextmanager
async def cleaned_up(instance: DockerBackend) -> AsyncIterator[DockerBackend]:
    """Yields ``instance``; then closes it, removes its agent's containers and releases its kernels' io mounts."""
    try:
        yield instance
    finally:
        await instance.close()
        await remove_agent_containers(instance.agent_id)
        release_io_mounts(instance.data_dir)


@pytest.fixture
async def backend(agent_id: str, tmp_path: Path, runner_dir: Path) -> AsyncIterator[DockerBackend]:
    """Yields a Docker backend of a fresh agent; its containers are removed afterwards."""
    async with cleaned_up(make_backend(agent_id, tmp_path / "data", runner_dir)) as instance:
        yield instance


@pytest.fixture
async def exits(backend: DockerBackend) -> AsyncIterator[Exits]:
    """Yields the collected exits of a running ``backend.watch``."""
    collected = Exits()
    collected.start(backend)
    try:
        yield collected
    finally:
        await collected.stop()
