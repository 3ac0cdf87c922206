"""A kernel's log is read from its end: the Docker backend asks the engine for the last lines only (``tail=``),
never the whole json-file log (up to 2 x 10 MB, read and joined by every log request before)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.agent.backends.docker import DockerBackend
from tests.support.docker_backend import agent_id, cleaned_up, launch
from tests.support.images import kernel_image
from tests.support.socket_proxy import SocketProxy
from tests.support.waiting import async_wait_for

__all__ = ["agent_id", "kernel_image"]

pytestmark = pytest.mark.docker

LINES = 40_000
CHATTY_RUNNER = f"""\
import socket, sys, time
for i in range({LINES}):
    print(f"line {{i:05d}} " + "x" * 80)
sys.stdout.flush()
server = socket.socket(socket.AF_UNIX)
server.bind(sys.argv[sys.argv.index("--socket") + 1])
server.listen()
print("runner up", flush=True)
while True:
    time.sleep(3600)
"""
LOG = "".join(f"line {i:05d} " + "x" * 80 + "\n" for i in range(LINES)) + "runner up\n"
"""The kernel's whole log: 3.6 MB."""


class CountingProxy(SocketProxy):
    """Forwards to the engine and counts the bytes that pass (``carried``)."""

    carried = 0

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                self.carried += len(data)
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        sink.close()


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[CountingProxy]:
    proxy = await CountingProxy(tmp_path / "engine.sock", "/var/run/docker.sock").start()
    yield proxy
    await proxy.close()


@pytest.fixture
async def backend(agent_id: str, tmp_path: Path, engine: CountingProxy) -> AsyncIterator[DockerBackend]:
    runner_dir = tmp_path / "runner"
    runner_dir.mkdir()
    (runner_dir / "berth_runner.py").write_text(CHATTY_RUNNER)
    async with cleaned_up(DockerBackend(agent_id, tmp_path / "data", grace=2, runner_dir=runner_dir, pull="never",
                                        docker_url=f"unix://{engine.path}")) as instance:
        yield instance


async def test_the_end_of_a_long_log_is_read_without_reading_the_log(
    backend: DockerBackend, engine: CountingProxy, kernel_image: str,
) -> None:
    request = launch(kernel_image)
    kernel_id = request.kernel.kernel_id
    await backend.create(request)

    async def all_logged() -> bool:
        return (await backend.logs(kernel_id, tail=1)).endswith("runner up\n")

    await async_wait_for(all_logged, timeout=30, message="the runner's lines never reached the log")

    async def read(**bounds: int | None) -> tuple[str, int]:
        before = engine.carried
        text = await backend.logs(kernel_id, **bounds)
        return text, engine.carried - before

    text, carried = await read(tail=3)
    assert text == LOG[LOG.rindex("line 39998"):]
    assert carried < 256 << 10, f"{carried} bytes came from the engine for 3 lines"

    text, carried = await read(limit=64 << 10)
    assert LOG.endswith(text) and (64 << 10) - 100 <= len(text) <= 64 << 10
    assert carried < 512 << 10

    text, carried = await read()  # as a log request asks: the end of at most 1 MiB
    assert LOG.endswith(text) and (1 << 20) - 100 <= len(text) <= 1 << 20
    assert carried < 2 << 20, f"{carried} bytes came from the engine for a log of {len(LOG)}"

    await backend.destroy(kernel_id)
    assert await backend.logs(kernel_id, tail=2) == LOG[LOG.rindex("line 39999"):], "the kept log's end"
