"""The kernel's memory as its cgroup tells it: the limit, and how many of its processes the kernel's
OOM killer ended. Stdlib only (part of the runner, see README.md).

A run during which the count grew lost a process to the limit; the runner then says so on the
run's stderr, with the limit, instead of leaving a bare exit status 137. Read from the cgroup
filesystem the runner is given (``--cgroup``, in a container its own ``/sys/fs/cgroup``), cgroup v2
(``memory.events``, ``memory.max``) or v1 (``memory/memory.oom_control``, ``memory/memory.limit_in_bytes``).
Without one (the process backend, or files the kernel cannot read) nothing is said.
"""

from __future__ import annotations

import os

__all__ = ["MemoryCgroup", "describe_size"]

UNLIMITED_V1 = 1 << 62
"""cgroup v1 writes "no limit" as a page-rounded 2**63 - 1; anything this large is no limit."""


def _existing(root: str | None, *names: str) -> str | None:
    """Returns the path of the first of ``names`` under ``root`` that exists (v2's, then v1's)."""
    if root is None:
        return None
    return next((path for path in (os.path.join(root, name) for name in names) if os.path.exists(path)), None)


def _read(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        with open(path, encoding="ascii") as file:
            return file.read(4096)
    except (OSError, ValueError):
        return None


def describe_size(size: int) -> str:
    """Returns ``size`` bytes for people: ``512 MiB``, ``1 GiB``, ``1.5 GiB``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{size} B"


class MemoryCgroup:
    """The memory files of one cgroup filesystem (``root``; None: none, every answer None). Which
    version's files it has is found once: a run reads one file at its start and one at its end."""

    def __init__(self, root: str | None) -> None:
        self._events = _existing(root, "memory.events", "memory/memory.oom_control")
        self._limit = _existing(root, "memory.max", "memory/memory.limit_in_bytes")

    def oom_kills(self) -> int | None:
        """Returns how many processes of the cgroup the OOM killer ended so far; None when unknown."""
        for line in (_read(self._events) or "").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return None

    def limit(self) -> int | None:
        """Returns the cgroup's memory limit in bytes; None when there is none or it is unknown."""
        text = (_read(self._limit) or "").strip()
        if not text.isdigit() or int(text) >= UNLIMITED_V1:
            return None
        return int(text)

    def killed_note(self, before: int | None) -> str | None:
        """Returns the line that tells a run it lost a process to the memory limit, when the OOM
        kills grew since ``before`` (``oom_kills()`` at the run's start); else None."""
        after = self.oom_kills()
        if before is None or after is None or after <= before:
            return None
        limit = self.limit()
        limit_text = f" ({describe_size(limit)})" if limit is not None else ""
        return (f"berth: out of memory: the kernel reached its memory limit{limit_text} during this run and a "
                f"process was killed (oom-kill); ask for more (the mem slot, e.g. -r mem=4g) or use less\n")
