"""The end of a container's log, asked of the engine a window of lines at a time, never the whole log.

aiodocker's ``container.log()`` reads all it is asked for into a list; a kernel's json-file log holds up to
2 x 10 MB, and a log request needs its last MiB at most. ``log_tail`` asks the engine for the last
``FIRST_LINES`` lines (``tail=``), then for ``GROWTH`` times more while they fit in ``limit`` bytes and the log
has more, keeping at most ``limit`` bytes of each window; a window that would cost more than ``READ_CAP`` bytes
(lines of up to 16 KiB each) is abandoned and the one before it answers. So a request reads a few MiB at most,
and a log of short lines still fills the answer.
"""

from __future__ import annotations

from collections import deque

from aiodocker.containers import DockerContainer
from aiodocker.multiplexed import MultiplexedResult

from services.agent.backends.log_tail import last_lines

__all__ = ["FIRST_LINES", "GROWTH", "MAX_LINES", "READ_CAP", "log_tail"]

FIRST_LINES = 200
"""Lines of the first window asked for."""
GROWTH = 8
"""How many times more lines each next window asks for."""
MAX_LINES = 200_000
"""Lines a window asks for at most."""
READ_CAP = 4 << 20
"""Bytes of one window read at most; past that it is abandoned for the window before it."""


async def log_tail(container: DockerContainer, lines: int | None, limit: int) -> str:
    """Returns the container's last ``lines`` lines (None: as many as fit) within its last ``limit`` bytes."""
    wanted = MAX_LINES if lines is None else min(lines, MAX_LINES)
    if wanted <= 0:
        return ""
    count, kept = min(FIRST_LINES, wanted), b""
    while True:
        window = await _window(container, count, limit)
        if window is None:  # this window's lines are long: the one before it is the answer
            break
        kept, entries = window
        if len(kept) >= limit or entries < count or count >= wanted:
            break
        count = min(wanted, count * GROWTH)
    return last_lines(kept[-limit:].decode("utf-8", errors="replace"), lines)


async def _window(container: DockerContainer, count: int, limit: int) -> tuple[bytes, int] | None:
    """Returns the last ``limit`` bytes of the container's last ``count`` log entries and how many entries came;
    None when they are more than ``READ_CAP`` bytes (the rest is not read)."""
    params = {"stdout": True, "stderr": True, "follow": False, "tail": count}
    # aiodocker's own log() uses _query too, then reads the whole answer into a list
    async with container.docker._query(f"containers/{container.id}/logs", params=params) as response:
        try:
            entries, read, size, frames = 0, 0, 0, deque[bytes]()
            async for frame in MultiplexedResult(response, raw=_tty(container)):
                entries += 1
                read += len(frame)
                if read > READ_CAP:
                    return None
                frames.append(frame)
                size += len(frame)
                while size - len(frames[0]) >= limit:
                    size -= len(frames.popleft())
            return b"".join(frames), entries
        finally:
            response.close()


def _tty(container: DockerContainer) -> bool:
    """Whether the container has a terminal (its log is then raw bytes, not frames); Berth's never have."""
    try:
        return bool(container["Config"]["Tty"])
    except (KeyError, TypeError):
        return False
