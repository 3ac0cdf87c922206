"""An agent pulls a missing kernel image only from the registries of ``BERTH_IMAGE_REGISTRIES``: a user
naming an image ``HOST:PORT/name`` must not have the node's Docker engine connect to that host (a real
engine, a loopback listener standing for any host a user might name)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.agent.backends.base import KernelStartError
from services.agent.backends.docker import DockerBackend
from tests.support.docker_backend import launch, runner_dir
from tests.support.waiting import async_wait_for

__all__ = ["runner_dir"]

pytestmark = pytest.mark.docker


class Listener:
    """A TCP port on loopback that counts the connections made to it and closes each at once."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()


@contextlib.asynccontextmanager
async def listening() -> AsyncIterator[Listener]:
    listener = Listener()
    server = await asyncio.start_server(listener._accept, "127.0.0.1", 0)  # noqa: SLF001
    listener.port = server.sockets[0].getsockname()[1]
    try:
        yield listener
    finally:
        server.close()
        await server.wait_closed()


def pulling_backend(tmp_path: Path, runner_dir: Path, **registries: str) -> DockerBackend:
    """A backend that pulls missing images (``BERTH_IMAGE_PULL=missing``, as a default agent)."""
    return DockerBackend("test-registries", tmp_path / "data", grace=2, runner_dir=runner_dir, pull="missing",
                         **registries)


async def test_an_image_of_a_registry_not_listed_is_refused_without_asking_its_host(
    tmp_path: Path, runner_dir: Path,
) -> None:
    backend = pulling_backend(tmp_path, runner_dir)  # default: Docker Hub only
    try:
        async with listening() as host:
            image = f"127.0.0.1:{host.port}/probe:latest"
            with pytest.raises(KernelStartError, match=rf"registry '127.0.0.1:{host.port}' is not one the agent "
                                                       r"pulls from \(BERTH_IMAGE_REGISTRIES: docker.io\)"):
                await backend.prepare(launch(image).kernel)
            assert host.connections == 0
    finally:
        await backend.close()


async def test_a_listed_registry_is_asked(tmp_path: Path, runner_dir: Path) -> None:
    """The other side of the test above: the listener does see the engine when its registry is listed
    (so a refusal that asks nothing is the list's doing)."""
    async with listening() as host:
        backend = pulling_backend(tmp_path, runner_dir, registries=f"docker.io,127.0.0.1:{host.port}")
        try:
            with pytest.raises(KernelStartError, match="could not be pulled"):
                await backend.prepare(launch(f"127.0.0.1:{host.port}/probe:latest").kernel)
            await async_wait_for(lambda: host.connections > 0, timeout=10, message="the engine never connected")
        finally:
            await backend.close()
