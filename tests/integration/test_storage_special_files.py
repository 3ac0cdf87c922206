"""A FIFO (or a socket) that code in a kernel made in a mounted folder is refused at once by a download,
and never opened for a wait: before, ``open`` waited on the event loop for a writer that never came, and
the service stopped answering everyone."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.storage import running_storage

pytestmark = pytest.mark.asyncio

PATIENCE = 20.0
"""Seconds a refusal may take on a busy machine before the FIFO is deemed waited on (then freed by a writer)."""


@contextlib.contextmanager
def _freed_after(fifo: Path, seconds: float) -> Iterator[threading.Event]:
    """Yields an event set when, ``seconds`` after the block began, something still waited to open ``fifo``
    for reading: a writer then opens it, so that the waiting open returns and the test ends."""
    freed, done = threading.Event(), threading.Event()

    def watch() -> None:
        if done.wait(seconds):
            return
        while not done.is_set():
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no reader (yet); the waiting open is on its way
                done.wait(0.05)
                continue
            freed.set()
            os.close(fd)
            return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield freed
    finally:
        done.set()
        watcher.join()


async def test_a_download_of_a_fifo_or_a_socket_is_refused_without_waiting(tmp_path: Path) -> None:
    async with running_storage(tmp_path / "vol") as storage, httpx.AsyncClient(timeout=2 * PATIENCE) as http:
        folder = storage.new_folder()
        root = storage.volume.folder_path(folder)
        os.mkfifo(root / "p")  # what `mkfifo /home/work/f/p` in a kernel leaves
        listening = socket.socket(socket.AF_UNIX)
        listening.bind(str(tmp_path / "s"))  # a socket's path has at most 107 bytes: made here, moved there
        os.rename(tmp_path / "s", root / "s")

        async def download(path: str) -> httpx.Response:
            return await http.get(storage.url + "/download", params={"token": storage.token(folder, path, "download")})

        with _freed_after(root / "p", PATIENCE) as freed:
            fifo = await download("p")
        listening.close()
        assert not freed.is_set(), "the download waited in open() until a writer came"
        assert fifo.status_code == 400 and fifo.json()["error"] == "not a regular file: 'p' is a FIFO"
        sock = await download("s")
        assert sock.status_code == 400 and sock.json()["error"] == "not a regular file: 's' is a socket"
        assert (await http.get(storage.url + "/health")).status_code == 200
        assert not [fd for fd in os.listdir("/proc/self/fd") if _names(fd, root)]


def _names(fd: str, root: Path) -> bool:
    with contextlib.suppress(OSError):
        return os.readlink(f"/proc/self/fd/{fd}").startswith(str(root))
    return False
