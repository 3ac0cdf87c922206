"""The end of a kernel's log, at most so many lines and bytes, as every backend's ``logs`` returns it.

A log grows with the kernel's life (Docker keeps up to 2 x 10 MB of it), and what a request can carry is the
bus's max payload (1 MiB by default): a backend reads only the end it returns, never the whole log.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["LOG_LIMIT", "file_tail", "last_lines"]

LOG_LIMIT = 1 << 20
"""Bytes of a log's end that ``logs`` returns by default."""


def last_lines(text: str, lines: int | None) -> str:
    """Returns the last ``lines`` lines of ``text`` (all of it when None, nothing when 0 or fewer)."""
    if lines is None:
        return text
    if lines <= 0:
        return ""
    return "".join(text.splitlines(keepends=True)[-lines:])


def file_tail(path: Path, lines: int | None = None, limit: int = LOG_LIMIT) -> str:
    """Returns the last ``lines`` lines within the last ``limit`` bytes of the file at ``path`` (UTF-8, bad bytes
    replaced); empty when there is no such file. Only those bytes are read."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return ""
    with f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - limit))
        return last_lines(f.read(limit).decode("utf-8", errors="replace"), lines)
