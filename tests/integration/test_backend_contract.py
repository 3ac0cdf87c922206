"""The kernel-backend contract: what ``services.agent.backends.base.KernelBackend`` promises, as the
agent (``services/agent/kernels.py``, ``exec_server.py``) relies on it, checked against every backend.

Each case runs against the docker (real engine, the real runner, images never pulled), process and
simulated backends. Where a backend legitimately differs, the case is skipped for it with the reason
declared in ``NOT_APPLICABLE`` — never silently.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from contracts.status import Reason
from services.agent.backends.base import KernelBackend, KernelLaunch, KernelStartError
from services.agent.backends.docker.backend import DEFAULT_RUNNER_DIR
from services.agent.backends.process import ProcessBackend
from services.agent.backends.simulated import SimulatedBackend
from services.agent.exec_server import open_runner
from services.agent.runner_socket import RunnerSocketRefused
from tests.support.docker_backend import Exits, launch, make_backend, release_io_mounts, remove_agent_containers
from tests.support.images import kernel_image
from tests.support.runner_calls import ask, run_code
from tests.support.waiting import async_wait_for

__all__ = ["kernel_image"]

BROKEN = "runner broken"
"""What a runner that dies before listening prints: the cause a failed start must carry."""

STOP_THE_RUNNER_SOON = (
    "import os, subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import os, signal, time; "
    "time.sleep(0.3); os.kill(%d, signal.SIGTERM)' % os.getppid()], start_new_session=True)"
)
"""Kernel code that has its runner (the query worker's parent) sent SIGTERM shortly after the run."""

NOT_APPLICABLE: dict[tuple[str, str], str] = {
    ("simulated", "runner"): "runs no code: it has no runner and no socket (runner_socket is None)",
    ("simulated", "exits"): "its kernels never exit by themselves (watch returns at once instead)",
    ("simulated", "start-failure"): "runs nothing, so no start can fail",
    ("process", "adoption-after-restart"): "a restarted agent does not adopt its runner processes (README)",
    ("simulated", "adoption-after-restart"): "its kernels exist only in the memory of one instance",
    ("docker", "watch-returns"): "its kernels exit by themselves: watch runs until cancelled",
    ("process", "watch-returns"): "its kernels exit by themselves: watch runs until cancelled",
}
"""(backend, capability) → why that part of the contract does not apply to that backend."""


@dataclass
class Node:
    """One backend kind on one node: builds instances (a second one = the agent restarted) that
    share the agent id and the data directory, and cleans up whatever they started."""

    name: str
    build: Callable[[bool], KernelBackend]
    image: str = "berth/python:latest"
    instances: list[KernelBackend] = field(default_factory=list)

    def backend(self, *, broken_runner: bool = False) -> KernelBackend:
        """Returns a new backend instance (its runner dies at once with ``broken_runner``)."""
        instance = self.build(broken_runner)
        self.instances.append(instance)
        return instance

    def launch(self) -> KernelLaunch:
        """Returns the launch of a new interactive kernel."""
        return launch(self.image)

    def require(self, capability: str) -> None:
        """Skips the case, with its declared reason, where it does not apply to this backend."""
        reason = NOT_APPLICABLE.get((self.name, capability))
        if reason is not None:
            pytest.skip(f"not applicable to the {self.name} backend: {reason}")


@pytest.fixture(params=[pytest.param("docker", marks=pytest.mark.docker), "process", "simulated"])
async def node(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Node]:
    """Yields a node of each backend kind; every kernel it started is destroyed afterwards."""
    kind: str = request.param
    data_dir = tmp_path / "data"
    broken_dir = tmp_path / "broken-runner"
    broken_dir.mkdir()
    (broken_dir / "berth_runner.py").write_text(f"print({BROKEN!r}, flush=True); raise SystemExit(2)\n")
    agent_id = f"test-{uuid.uuid4().hex[:10]}"
    if kind == "docker":
        image = request.getfixturevalue("kernel_image")
        result = Node(kind, lambda broken: make_backend(agent_id, data_dir, broken_dir if broken else DEFAULT_RUNNER_DIR),
                      image=image)
    elif kind == "process":
        broken_python = tmp_path / "broken-python"
        broken_python.write_text(f"#!/bin/sh\necho {BROKEN}\nexit 2\n")
        broken_python.chmod(0o755)
        result = Node(kind, lambda broken: ProcessBackend(data_dir, grace=2.0,
                                                           python=str(broken_python) if broken else sys.executable))
    else:
        result = Node(kind, lambda broken: SimulatedBackend(delay=0.01))
    try:
        yield result
    finally:
        for instance in result.instances:
            for kernel_id in list(await instance.list_running()):
                await instance.destroy(kernel_id)
            await instance.close()
        if kind == "docker":
            await remove_agent_containers(agent_id)
            release_io_mounts(data_dir)


async def start(backend: KernelBackend, request: KernelLaunch) -> str:
    """Starts a kernel as the agent does: prepare (its progress lines are strings), then create."""
    lines: list[object] = []

    async def progress(line: str) -> None:
        lines.append(line)

    await backend.prepare(request.kernel, progress)
    container_id = await backend.create(request)
    assert all(isinstance(line, str) and line for line in lines), lines
    return container_id


async def test_create_returns_a_container_id_that_list_running_shows(node: Node) -> None:
    backend = node.backend()
    request = node.launch()
    kernel_id = request.kernel.kernel_id
    assert await backend.list_running() == {}

    container_id = await start(backend, request)

    assert isinstance(container_id, str) and container_id
    assert await backend.list_running() == {kernel_id: container_id}
    if (node.name, "runner") in NOT_APPLICABLE:
        assert backend.runner_socket(kernel_id) is None
    assert isinstance(await backend.logs(kernel_id), str)


async def test_create_of_a_running_kernel_returns_the_existing_one(node: Node) -> None:
    backend = node.backend()
    request = node.launch()
    container_id = await start(backend, request)

    assert await start(backend, request) == container_id, "a redelivered assignment starts no second kernel"
    assert await backend.list_running() == {request.kernel.kernel_id: container_id}


async def test_a_restarted_agent_adopts_the_running_kernels(node: Node) -> None:
    node.require("adoption-after-restart")
    first = node.backend()
    request = node.launch()
    container_id = await start(first, request)
    await first.close()  # the agent dies; its kernels must not

    restarted = node.backend()
    assert await restarted.list_running() == {request.kernel.kernel_id: container_id}
    assert await restarted.create(request) == container_id


async def test_destroy_removes_the_kernel_returns_its_exit_code_and_is_idempotent(node: Node) -> None:
    backend = node.backend()
    request = node.launch()
    kernel_id = request.kernel.kernel_id
    await start(backend, request)

    exit_code = await backend.destroy(kernel_id)

    assert isinstance(exit_code, int)
    assert kernel_id not in await backend.list_running()
    assert await backend.destroy(kernel_id) in (exit_code, None), "a repeated destroy is harmless"
    assert kernel_id not in await backend.list_running()
    assert await backend.destroy("never-ran-here") is None
    assert await backend.logs("never-ran-here") == ""


async def test_the_runner_socket_answers_while_the_kernel_runs(node: Node) -> None:
    node.require("runner")
    backend = node.backend()
    request = node.launch()
    kernel_id = request.kernel.kernel_id
    await start(backend, request)  # returns only once the runner listens

    path = backend.runner_socket(kernel_id)
    assert path is not None and path.exists()
    pong = await ask(path, {"op": "ping"}, until=lambda a: True)
    assert pong[-1]["op"] == "pong"
    out, code = await run_code(path, "import os; print(os.environ['BERTH_KERNEL_ID'], 6 * 7)")
    assert (out, code) == (f"{kernel_id} 42\n", 0)
    assert await run_code(path, "raise SystemExit(4)") == ("", 4)


async def test_the_runner_socket_and_the_kernel_directory_are_private_to_the_agents_user(node: Node) -> None:
    node.require("runner")
    backend = node.backend()
    request = node.launch()
    await start(backend, request)

    socket_path = backend.runner_socket(request.kernel.kernel_id)
    assert socket_path is not None
    assert socket_path.stat().st_mode & 0o077 == 0, f"{socket_path} is {oct(socket_path.stat().st_mode)}"
    for directory in (socket_path.parent, socket_path.parent.parent, socket_path.parent.parent.parent):
        assert directory.stat().st_mode & 0o777 == 0o700, f"{directory} is {oct(directory.stat().st_mode)}"
    assert await run_code(socket_path, "print(1)") == ("1\n", 0), "the agent's user still runs code"


PLANT_A_LINK = """
import os
try:
    os.symlink({target!r}, {io!r} + '/planted')
    os.rename({io!r} + '/planted', {io!r} + '/runner.sock')
    print('planted')
except OSError as exc:
    print('refused', exc.errno)
"""
"""Kernel code that replaces its runner's socket with a link to ``target``, a socket on the host."""


async def test_a_link_a_kernel_plants_for_its_socket_is_never_followed(node: Node, tmp_path: Path) -> None:
    node.require("runner")
    backend = node.backend()
    request = node.launch()
    await start(backend, request)
    socket_path = backend.runner_socket(request.kernel.kernel_id)
    assert socket_path is not None
    decoy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # stands for the Docker engine's socket
    decoy.bind(str(tmp_path / "host.sock"))
    decoy.listen(4)
    decoy.setblocking(False)
    try:
        io = "/opt/berth/io" if node.name == "docker" else str(socket_path.parent)
        out, code = await run_code(socket_path, PLANT_A_LINK.format(target=str(tmp_path / "host.sock"), io=io))
        assert code == 0, out
        if node.name == "docker" and os.getuid() == 0:  # once its runner listens, io/ is not the kernel's
            assert out == f"refused {errno.EACCES}\n", out
            assert await run_code(socket_path, "print(1)") == ("1\n", 0)
        else:  # a process kernel (or one sharing a non-root agent's uid) can plant it: the agent refuses it
            assert out == "planted\n", out
            with pytest.raises(RunnerSocketRefused, match="symbolic link"):
                await open_runner(socket_path)
        with pytest.raises(BlockingIOError):
            decoy.accept()  # the agent never connected to the host's socket
    finally:
        decoy.close()


async def test_a_kernel_that_exits_by_itself_is_reported_with_its_exit_code(node: Node) -> None:
    node.require("exits")
    node.require("runner")
    backend = node.backend()
    exits = Exits()
    exits.start(backend)
    try:
        destroyed, leaving = node.launch(), node.launch()
        await start(backend, destroyed)
        await start(backend, leaving)
        leaving_id = leaving.kernel.kernel_id
        await backend.destroy(destroyed.kernel.kernel_id)

        path = backend.runner_socket(leaving_id)
        assert path is not None
        # The kernel's own code stops its runner, once the run is over (SIGTERM arriving in the
        # middle of a query run can make the runner exit 1 instead of 143: a runner matter).
        assert await run_code(path, STOP_THE_RUNNER_SOON) == ("", 0)
        await async_wait_for(lambda: leaving_id in exits.reports, timeout=30, message="the exit was not reported")

        exit_code, reason = exits.reports[leaving_id]
        assert exit_code == 128 + signal.SIGTERM
        assert Reason(reason) in (Reason.SELF_TERMINATED, Reason.TASK_FAILED)
        await async_wait_for(lambda: _not_running(backend, leaving_id), timeout=10)
        assert destroyed.kernel.kernel_id not in exits.reports, "a destroyed kernel is not an exit by itself"
    finally:
        await exits.stop()


async def _not_running(backend: KernelBackend, kernel_id: str) -> bool:
    return kernel_id not in await backend.list_running()


async def test_watch_returns_at_once_where_kernels_never_exit_by_themselves(node: Node) -> None:
    node.require("watch-returns")
    backend = node.backend()
    await start(backend, node.launch())
    calls: list[tuple[str, int | None, str]] = []

    async def on_exit(kernel_id: str, exit_code: int | None, reason: str) -> None:
        calls.append((kernel_id, exit_code, reason))

    await asyncio.wait_for(backend.watch(on_exit), 5)
    assert calls == []


async def test_a_start_that_cannot_succeed_raises_kernel_start_error_with_its_cause(node: Node) -> None:
    node.require("start-failure")
    backend = node.backend(broken_runner=True)
    request = node.launch()
    kernel_id = request.kernel.kernel_id

    with pytest.raises(KernelStartError) as failure:
        await start(backend, request)

    assert kernel_id in str(failure.value) and BROKEN in str(failure.value), str(failure.value)
    assert await backend.list_running() == {}
