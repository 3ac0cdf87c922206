"""Tells whether a Docker engine answers, for picking the agent's backend."""

from __future__ import annotations

import asyncio
import os
import socket
from urllib.parse import urlparse

__all__ = ["docker_available", "docker_available_sync", "docker_socket_path"]

DEFAULT_SOCKET = "/var/run/docker.sock"


def docker_socket_path() -> str | None:
    """Returns the engine's Unix socket from ``DOCKER_HOST`` or the default one; None when
    ``DOCKER_HOST`` names a non-Unix endpoint."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host:
        return DEFAULT_SOCKET
    parsed = urlparse(host)
    return parsed.path if parsed.scheme == "unix" else None


def docker_available_sync(timeout: float = 3.0) -> bool:
    """Returns True when the engine's Unix socket answers ``GET /_ping`` with ``OK``."""
    path = docker_socket_path()
    if path is None or not os.path.exists(path):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
    except OSError:
        return False
    head, _, body = reply.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    return len(status) >= 2 and status[1] == b"200" and body.strip() == b"OK"


async def docker_available(timeout: float = 3.0) -> bool:
    """Returns True when a Docker engine answers (the probe runs in a thread)."""
    return await asyncio.to_thread(docker_available_sync, timeout)
