"""The agent connects to a runner's socket without following a link a kernel could have planted
(``services/agent/runner_socket.py``), with real Unix sockets."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.agent.runner_socket import RunnerSocketRefused, open_runner


@pytest.fixture
def decoy(tmp_path: Path) -> Iterator[socket.socket]:
    """A listening socket standing for a host socket (the Docker engine's): nothing may connect to it."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(tmp_path / "host.sock"))
    server.listen(4)
    server.setblocking(False)
    try:
        yield server
    finally:
        server.close()


def _connected(server: socket.socket) -> bool:
    """True when a connection waits on ``server`` (a Unix connect() is queued before it returns)."""
    try:
        conn, _ = server.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


def _io_dir(tmp_path: Path) -> Path:
    io = tmp_path / "kernels" / "k1" / "io"
    io.mkdir(parents=True)
    return io


async def test_a_symlink_planted_for_the_socket_is_refused_and_not_followed(tmp_path: Path,
                                                                           decoy: socket.socket) -> None:
    io = _io_dir(tmp_path)
    (io / "runner.sock").symlink_to(tmp_path / "host.sock")

    with pytest.raises(RunnerSocketRefused, match="runner.sock is a symbolic link, refused"):
        await open_runner(io / "runner.sock")
    assert not _connected(decoy), "the agent followed the link to the host's socket"


async def test_a_directory_link_in_place_of_io_is_not_followed(tmp_path: Path, decoy: socket.socket) -> None:
    kernel = tmp_path / "kernels" / "k1"
    kernel.mkdir(parents=True)
    (kernel / "io").symlink_to(tmp_path)  # tmp_path holds a socket named like the runner's
    os.rename(tmp_path / "host.sock", tmp_path / "runner.sock")

    with pytest.raises(OSError):
        await open_runner(kernel / "io" / "runner.sock")
    assert not _connected(decoy)


async def test_anything_but_a_socket_is_refused(tmp_path: Path) -> None:
    io = _io_dir(tmp_path)
    (io / "runner.sock").write_text("not a socket")
    with pytest.raises(RunnerSocketRefused, match="runner.sock is not a socket"):
        await open_runner(io / "runner.sock")
    with pytest.raises(FileNotFoundError):
        await open_runner(io / "missing.sock")


@pytest.mark.parametrize("depth", [1, 12], ids=["short-path", "path-too-long-for-AF_UNIX"])
async def test_a_real_socket_is_connected(tmp_path: Path, depth: int) -> None:
    io = tmp_path.joinpath(*["d" * 10] * depth) / "io"
    io.mkdir(parents=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dir_fd = os.open(io, os.O_PATH)
    server.bind(f"/proc/self/fd/{dir_fd}/runner.sock")
    os.close(dir_fd)
    server.listen(1)
    try:
        reader, writer = await open_runner(io / "runner.sock")
        conn, _ = server.accept()
        conn.sendall(b"pong\n")
        assert await reader.readline() == b"pong\n"
        writer.close()
        conn.close()
    finally:
        server.close()
