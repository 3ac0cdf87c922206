"""Two directions of one connection carried at once (an app tunnel's pumps): the first to end ends both; and
TCP keepalive on such a connection, so that a peer gone without a word (its host off, the network cut) ends it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from typing import Any

__all__ = ["KEEPALIVE_IDLE", "keep_alive", "until_first_ends"]

KEEPALIVE_IDLE = 30
"""Seconds a connection may be silent before TCP probes its peer (then every 10 s; the third unanswered ends it)."""


async def until_first_ends(*pumps: Coroutine[Any, Any, None]) -> None:
    """Runs ``pumps`` until one of them returns or fails, then cancels the others and waits for them; what
    any raised is dropped (a connection's end, whichever way it came, ends the others)."""
    tasks = [asyncio.ensure_future(pump) for pump in pumps]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def keep_alive(writer: asyncio.StreamWriter, idle: int = KEEPALIVE_IDLE, interval: int = 10, count: int = 3) -> None:
    """Turns on TCP keepalive for ``writer``'s connection (nothing for a Unix socket): a peer that went away
    without closing is found within ``idle + interval * count`` seconds, and the connection's reads fail,
    where they would wait forever (a tunnel, and what it holds, would outlive the host it went to)."""
    sock = writer.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", count)):
        if hasattr(socket, option):  # Linux has them all; elsewhere the system's defaults apply
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
