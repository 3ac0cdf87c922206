"""The Docker backend's exit watcher when the engine's event stream breaks mid-stream (a restarting engine
does that to its clients), on the real engine through a socket proxy the test cuts: the watcher reconnects
and hands over the exit it missed meanwhile, instead of ending for good."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest

from services.agent.backends.docker.exits import ExitWatcher
from services.agent.backends.docker.owner import Owner
from services.agent.backends.docker.spec import LABEL_AGENT, LABEL_INSTANCE, LABEL_KERNEL
from tests.support.images import kernel_image
from tests.support.socket_proxy import SocketProxy
from tests.support.waiting import async_wait_for

__all__ = ["kernel_image"]

pytestmark = pytest.mark.docker

ENGINE = "/run/docker.sock"


@pytest.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[SocketProxy]:
    instance = await SocketProxy(tmp_path / "docker.sock", ENGINE).start()
    try:
        yield instance
    finally:
        await instance.close()


async def test_the_watcher_outlives_a_broken_event_stream_and_sweeps_what_it_missed(
        proxy: SocketProxy, kernel_image: str, tmp_path: Path) -> None:
    agent_id, kernel_id = f"watch-{uuid.uuid4().hex[:8]}", f"k-{uuid.uuid4().hex[:8]}"
    owner = Owner.of(agent_id, tmp_path / "data")
    engine, through_proxy = aiodocker.Docker(url=f"unix://{ENGINE}"), aiodocker.Docker(url=f"unix://{proxy.path}")
    exited: list[str] = []

    async def on_exit(kernel: str, container_id: str) -> None:
        exited.append(kernel)
        await engine.containers.container(container_id).delete(force=True)

    watcher = ExitWatcher(through_proxy, owner, on_exit)
    labels = {LABEL_AGENT: agent_id, LABEL_INSTANCE: owner.instance, LABEL_KERNEL: kernel_id}
    container = await engine.containers.run({
        "Image": kernel_image, "Cmd": ["sleep", "600"], "Labels": labels,
        "HostConfig": {"NetworkMode": "none"},
    })
    watching = asyncio.create_task(watcher.run())
    try:
        await async_wait_for(lambda: proxy.connections, timeout=30, message="the watcher never opened its event stream")
        proxy.cut()
        await container.kill()
        await async_wait_for(lambda: exited == [kernel_id] or watching.done(), timeout=60,
                             message="the exit was never handed over")
        assert not watching.done(), f"the watcher ended: {watching.exception()!r}"
        assert exited == [kernel_id]
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        try:
            await container.delete(force=True)
        except aiodocker.exceptions.DockerError:
            pass
        await through_proxy.close()
        await engine.close()
