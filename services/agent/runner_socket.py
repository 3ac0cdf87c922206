"""Connects to a kernel runner's Unix socket without following a link the kernel could have planted.

The socket lives in the kernel's ``io/`` directory, which the container writes while its runner
starts. ``connect()`` follows a symbolic link in the last component of a path, so a kernel that
replaced ``runner.sock`` with a link to a host socket (the Docker engine's, NATS's) would have the
agent send its requests there. Instead the socket is opened with ``O_PATH | O_NOFOLLOW`` relative to
the directory (itself opened without following a link), the open file must be a socket, and the
connection goes through ``/proc/self/fd/<fd>``: the very inode that was checked, with no window
between the check and the connect. Long paths need no special case either.

The kernel on the other side may stop reading (a SIGSTOPped runner) or never answer: ``send`` waits for
the kernel to take a request only ``SEND_TIMEOUT`` seconds, and ``abort`` closes a connection at once,
dropping what the kernel did not read (``close`` would keep the socket until it did).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from pathlib import Path

__all__ = ["CONNECT_TIMEOUT", "LINE_LIMIT", "SEND_TIMEOUT", "RunnerSocketRefused", "abort", "encoded", "interrupt_request",
           "open_runner", "send"]

log = logging.getLogger(__name__)

LINE_LIMIT = 4 << 20
CONNECT_TIMEOUT = 5.0
SEND_TIMEOUT = 5.0
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class RunnerSocketRefused(OSError):
    """Raised when a runner's socket path names a link or anything else but a socket."""


def _socket_fd(path: Path) -> int:
    """Returns an ``O_PATH`` descriptor of the socket at ``path``; RunnerSocketRefused when it is not
    a socket (a link is never followed), FileNotFoundError when it is missing."""
    dir_fd = os.open(path.parent, _PATH_FLAGS | os.O_DIRECTORY)
    try:
        fd = os.open(path.name, _PATH_FLAGS, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISSOCK(mode):
        os.close(fd)
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a socket"
        log.warning("refused to connect to %s: it is %s (planted in the kernel's io directory?)", path, kind)
        raise RunnerSocketRefused(f"{path.name} is {kind}, refused (the agent never follows a link there)")
    return fd


async def open_runner(path: Path, limit: int = LINE_LIMIT) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connects to the runner's socket at ``path``, never following a link (see the module's docstring).
    ``limit``: the longest line the reader takes; it also buffers at most twice that before it stops
    reading (a connection that carries an app's bytes wants far less than exec's lines)."""
    fd = _socket_fd(Path(path))
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            return await asyncio.open_unix_connection(f"/proc/self/fd/{fd}", limit=limit)
    finally:
        os.close(fd)


def encoded(message: dict) -> bytes:
    """Returns ``message`` as the runner reads a request: one line of JSON."""
    return (json.dumps(message) + "\n").encode()


def interrupt_request(run_id: str) -> dict:
    """Returns the runner's request to interrupt run ``run_id``."""
    return {"op": "interrupt", "run_id": run_id}


async def send(writer: asyncio.StreamWriter, message: dict, timeout: float = SEND_TIMEOUT) -> None:
    """Writes ``message`` as one line of JSON and waits, at most ``timeout`` seconds (then TimeoutError), until
    the kernel took it (or the socket's buffers did)."""
    writer.write(encoded(message))
    async with asyncio.timeout(timeout):
        await writer.drain()


def abort(writer: asyncio.StreamWriter) -> None:
    """Closes the connection now, dropping what the kernel has not read."""
    writer.transport.abort()
