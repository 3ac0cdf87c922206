"""Tells whether a Docker engine answers, for picking the agent's backend, and if not, why and
how to get one (``no_docker_message``: one line for people)."""

from __future__ import annotations

import asyncio
import os
import socket
from urllib.parse import urlparse

__all__ = ["docker_available", "docker_available_sync", "docker_problem", "docker_socket_path", "no_docker_message"]

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
    return docker_problem(timeout) is None


def docker_problem(timeout: float = 3.0) -> str | None:
    """Returns None when the engine's Unix socket answers ``GET /_ping`` with ``OK``, else why
    not, in a few words (``/var/run/docker.sock does not exist``, ``... permission denied``)."""
    path = docker_socket_path()
    if path is None:
        return f"DOCKER_HOST={os.environ.get('DOCKER_HOST')} is not a Unix socket (unix://...)"
    if not os.path.exists(path):
        return f"{path} does not exist"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
    except PermissionError:
        return f"{path}: permission denied"
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    head, _, body = reply.partition(b"\r\n\r\n")
    first = head.split(b"\r\n", 1)[0]
    status = first.split()
    if len(status) >= 2 and status[1] == b"200" and body.strip() == b"OK":
        return None
    return f"{path} answered {first.decode(errors='replace')!r} to a ping"


def no_docker_message(problem: str) -> str:
    """Returns the one line that says no Docker engine answers (``problem``: why) and how to
    get one, and what the process backend, never chosen by ``auto``, would mean."""
    if "permission denied" in problem:
        fix = "Add yourself to the docker group (`sudo usermod -aG docker $USER`, then log in again)"
    else:
        fix = ("Install and start one (Debian/Ubuntu: `sudo apt-get install docker.io`, then "
               "`sudo systemctl start docker` or `sudo dockerd &`)")
    return (f"no Docker engine answers ({problem}), and Berth runs code in Docker containers. {fix}. "
            "`--backend process` (BERTH_AGENT_BACKEND=process) would run tenant code unisolated, as the "
            "operator (this user, on this host, able to read Berth's keys): choose it only by name, where "
            "you trust everyone who can create a session.")


async def docker_available(timeout: float = 3.0) -> bool:
    """Returns True when a Docker engine answers (the probe runs in a thread)."""
    return await asyncio.to_thread(docker_available_sync, timeout)
