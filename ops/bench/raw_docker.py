"""The raw Docker baseline of ``bench_runtime.py``: the very container body Berth's docker backend
sends (``container_config``: same image, runner command, mounts, limits, network ``none``), created
and started straight through aiodocker, and ``docker exec`` through aiodocker and the CLI; plus the
client that removes every container of the benchmark's agents at the end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiodocker

from contracts.agent import KernelAssigned
from contracts.slots import parse_slots
from services.agent.backends.base import KernelLaunch
from services.agent.backends.dir_changes import DirectoryWatcher
from services.agent.backends.docker.confinement import AUTO_USER, kernel_user, scratch_sizes
from services.agent.backends.docker.spec import LABEL_AGENT, KernelPaths, container_config
from services.agent.backends.private import hand_over, private_dirs
from services.application.context import make_context

ROOT = Path(__file__).resolve().parents[2]
SLOTS = {"cpu": "1", "mem": "256m"}
"""Slots of each session (and raw container) that starts alone."""
RUNNER_DIR = ROOT / "services" / "agent" / "runner"
POLL = 0.005
_DIRS = DirectoryWatcher()
"""Watches each raw container's ``io/`` for its runner's socket, as the backend does (one inotify instance)."""
KERNEL_USER = kernel_user(AUTO_USER)
"""The user the docker backend runs kernels as (its default, ``BERTH_KERNEL_USER=auto``)."""
SCRATCH = scratch_sizes("1g", "256m")
"""The docker backend's default scratch sizes."""


def raw_config(image: str, agent_id: str, data_dir: Path) -> tuple[dict[str, Any], KernelPaths]:
    """Returns the container body Berth's docker backend would send, for a fresh kernel id."""
    kernel_id, session_id = f"raw-{uuid.uuid4().hex[:12]}", f"raw-s-{uuid.uuid4().hex[:8]}"
    ctx = make_context("bench")
    kernel = KernelAssigned(
        event_id=uuid.uuid4(), originator_id=agent_id, originator_version=1, timestamp=ctx.now,
        metadata=ctx.metadata, kernel_id=kernel_id, session_id=session_id, image=image,
        slots={k: Decimal(v) for k, v in parse_slots(SLOTS).items()},
    )
    env = {"BERTH_SESSION_ID": session_id, "BERTH_KERNEL_ID": kernel_id, "BERTH_CLUSTER_ROLE": "main"}
    paths = KernelPaths.of(data_dir, kernel_id)
    config = container_config(KernelLaunch(kernel=kernel, env=env), agent_id=agent_id, paths=paths,
                              runner_dir=RUNNER_DIR, user=KERNEL_USER, scratch=SCRATCH)
    return config, paths


async def raw_start(docker: aiodocker.Docker, image: str, agent_id: str, data_dir: Path) -> tuple[float, float]:
    """Creates, starts and removes one container; returns (create+start, create+start+socket) seconds."""
    config, paths = raw_config(image, agent_id, data_dir)
    private_dirs(paths.root, paths.io)
    hand_over(paths.io, KERNEL_USER.uid, KERNEL_USER.gid)  # the runner (kernel user) creates its socket there
    t0 = time.perf_counter()
    container = await docker.containers.create(config)
    try:
        with _DIRS.watch(paths.io, fallback=POLL) as changes:  # woken as the backend is (dir_changes.py)
            await container.start()
            started = time.perf_counter() - t0
            deadline = time.monotonic() + 30
            while not paths.socket.exists():
                if time.monotonic() > deadline:
                    raise TimeoutError("the runner did not listen in the raw container")
                await changes.wait(deadline - time.monotonic())
        listening = time.perf_counter() - t0
    finally:
        await container.delete(force=True)
    return started, listening


async def raw_burst(docker: aiodocker.Docker, image: str, agent_id: str, data_dir: Path, count: int) -> float:
    """Creates and starts ``count`` containers at once; returns the seconds until the last runner
    listened (each timed from its own create, all sent together)."""
    starts = await asyncio.gather(*(raw_start(docker, image, agent_id, data_dir) for _ in range(count)))
    return max(listening for _, listening in starts)


async def docker_exec_api(container: Any, user: str) -> float:
    t0 = time.perf_counter()
    exe = await container.exec(["python3", "-c", "print(1)"], user=user)
    out = b""
    async with exe.start(detach=False) as stream:
        while (msg := await stream.read_out()) is not None:
            out += msg.data
    elapsed = time.perf_counter() - t0
    if out.strip() != b"1":
        raise RuntimeError(f"docker exec printed {out!r}")
    return elapsed


async def docker_exec_cli(container_id: str, user: str) -> float:
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec("docker", "exec", "-u", user, container_id, "python3", "-c", "print(1)",
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0 or out.strip() != b"1":
        raise RuntimeError(f"docker exec (CLI) failed: {proc.returncode} {err!r}")
    return elapsed


@contextlib.asynccontextmanager
async def docker_client(agent_ids: list[str]) -> AsyncIterator[aiodocker.Docker]:
    """Yields a Docker client; on the way out removes every container of ``agent_ids``."""
    docker = aiodocker.Docker()
    try:
        yield docker
    finally:
        for agent_id in agent_ids:
            filters = json.dumps({"label": [f"{LABEL_AGENT}={agent_id}"]})
            for container in await docker.containers.list(all=True, filters=filters):
                with contextlib.suppress(aiodocker.DockerError):
                    await container.delete(force=True)
        await docker.close()
