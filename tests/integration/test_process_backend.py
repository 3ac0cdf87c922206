"""The process backend: real runner subprocesses per kernel, started, watched and destroyed."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from contracts.agent import KernelAssigned
from contracts.envelope import Metadata, utc_now
from services.agent.backends.base import KernelLaunch
from services.agent.exec_server import open_runner
from services.agent.backends.process import ProcessBackend
from tests.support.kernel_dirs import age
from tests.support.waiting import async_wait_for


def launch(kernel_id: str = "k1") -> KernelLaunch:
    kernel = KernelAssigned(
        event_id="e1", originator_id="local", originator_version=1, timestamp=utc_now(), metadata=Metadata(actor="test", correlation_id="c"),
        kernel_id=kernel_id, session_id="s1", image="berth/python:latest", slots={"cpu": Decimal(1)},
    )
    return KernelLaunch(kernel=kernel, env={"BERTH_KERNEL_ID": kernel_id, "BERTH_SESSION_ID": "s1"})


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[ProcessBackend]:
    backend = ProcessBackend(tmp_path, grace=2.0)
    yield backend
    for kernel_id in list(await backend.list_running()):
        await backend.destroy(kernel_id)
    await backend.close()


async def run(path: Path, code: str) -> tuple[str, int]:
    reader, writer = await open_runner(path)
    writer.write((json.dumps({"op": "run", "run_id": "r", "mode": "query", "code": code}) + "\n").encode())
    out = ""
    try:
        while True:
            message = json.loads(await asyncio.wait_for(reader.readline(), 10))
            if message["kind"] == "done":
                return out, message["exit_code"]
            out += message["data"]
    finally:
        writer.close()


def test_it_warns_loudly_that_it_does_not_isolate(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        ProcessBackend(tmp_path)
    assert any(r.levelno == logging.WARNING and "WITHOUT ANY ISOLATION" in r.message for r in caplog.records)


async def test_a_kernel_runs_code_with_its_env_in_its_work_dir(backend: ProcessBackend, tmp_path: Path) -> None:
    container_id = await backend.create(launch())
    assert container_id.startswith("proc-")
    assert await backend.create(launch()) == container_id, "create is idempotent"
    assert await backend.list_running() == {"k1": container_id}
    path = backend.runner_socket("k1")
    assert path == tmp_path / "kernels" / "k1" / "io" / "runner.sock" and path.exists()
    out, code = await run(path, "import os; print(os.environ['BERTH_KERNEL_ID'], os.getcwd())")
    assert (out, code) == (f"k1 {tmp_path / 'kernels' / 'k1' / 'work'}\n", 0)
    assert "listening" in await backend.logs("k1")


async def test_destroy_terminates_the_runner_and_is_idempotent(backend: ProcessBackend) -> None:
    container_id = await backend.create(launch())
    pid = int(container_id.removeprefix("proc-"))
    assert await backend.destroy("k1") == 128 + signal.SIGTERM
    assert await backend.list_running() == {}
    assert backend.runner_socket("k1") is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert await backend.destroy("k1") is None
    assert await backend.destroy("never") is None
    assert "listening" in await backend.logs("k1"), "the log outlives the kernel"


async def test_an_ended_kernels_directory_goes_once_kept_past_the_retention_and_a_running_ones_stays(
    backend: ProcessBackend, tmp_path: Path,
) -> None:
    """The log and working directory of a kernel ended a week ago (``BERTH_KERNEL_RETENTION``) go; those of a
    kernel whose runner still runs stay, however old."""
    await backend.create(launch("k-ended"))
    await backend.create(launch("k-runs"))
    await backend.destroy("k-ended")
    for kernel_id in ("k-ended", "k-runs"):
        age(backend.kernel_dir(kernel_id), 8)
    assert await backend.sweep() == ["k-ended"]  # its first look finds every directory there
    assert not backend.kernel_dir("k-ended").exists()
    assert (backend.kernel_dir("k-runs") / "work").is_dir()
    assert "k-runs" in await backend.list_running()
    assert await backend.sweep() == []


async def test_a_runner_that_exits_by_itself_is_reported(backend: ProcessBackend) -> None:
    exits: list[tuple[str, int | None, str]] = []

    async def on_exit(kernel_id: str, exit_code: int | None, reason: str) -> None:
        exits.append((kernel_id, exit_code, reason))

    watcher = asyncio.create_task(backend.watch(on_exit))
    try:
        container_id = await backend.create(launch("k2"))
        os.kill(int(container_id.removeprefix("proc-")), signal.SIGKILL)
        await async_wait_for(lambda: exits, timeout=10, message="the exit was not reported")
        assert exits == [("k2", 128 + signal.SIGKILL, "self-terminated")]
        assert await backend.list_running() == {}
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


async def test_a_destroyed_kernel_is_not_reported_as_exited_by_itself(backend: ProcessBackend) -> None:
    exits: list[str] = []

    async def on_exit(kernel_id: str, exit_code: int | None, reason: str) -> None:
        exits.append(kernel_id)

    watcher = asyncio.create_task(backend.watch(on_exit))
    try:
        await backend.create(launch("k3"))
        await backend.destroy("k3")
        await backend.create(launch("k4"))
        container_id = await backend.create(launch("k4"))
        os.kill(int(container_id.removeprefix("proc-")), signal.SIGTERM)
        await async_wait_for(lambda: exits, timeout=10)
        assert exits == ["k4"]
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
