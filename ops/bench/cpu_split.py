"""CPU seconds per process of a running ``berth up``, read from /proc, for the benchmarks.

``CpuSampler(root_pid, data_dir, dbname)`` samples, every ``interval`` seconds on a thread, the user +
system CPU time of: every descendant of ``root_pid`` (the services, named by their ``-m services.<name>``
module: gateway, relay, projector, scheduler, controller, agent, storage), the processes whose command
line names ``data_dir`` (its nats-server: ``nats``) and the PostgreSQL backends of ``dbname``
(``postgres``). ``mark()`` returns the totals so far per name; the difference of two marks is the CPU
spent in between (a process that ended between two samples loses at most its last ``interval``).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections import Counter
from pathlib import Path

__all__ = ["CpuSampler", "per_item"]

_TICKS = os.sysconf("SC_CLK_TCK")
_SERVICE = re.compile(rb"-m\x00services\.(\w+)")


def _stat(pid: int) -> tuple[int, float] | None:
    """Returns (parent pid, CPU seconds) of ``pid``, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2:].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def _cmdline(pid: int) -> bytes:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    return b""


class CpuSampler:
    """Samples the CPU time of a ``berth up`` and its PostgreSQL backends (see the module's doc)."""

    def __init__(self, root_pid: int, data_dir: Path, dbname: str, interval: float = 0.5) -> None:
        self._root, self._mark, self._db = root_pid, str(data_dir).encode(), dbname.encode()
        self._interval = interval
        self._seen: dict[int, tuple[str, float]] = {}
        """The name and the latest CPU seconds of every process seen so far."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def __enter__(self) -> CpuSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def mark(self) -> Counter[str]:
        """Returns the CPU seconds each name has spent so far (sampled now)."""
        self._sample()
        totals: Counter[str] = Counter()
        with self._lock:
            for name, seconds in self._seen.values():
                totals[name] += seconds
        return totals

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        stats = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (stat := _stat(int(entry))) is not None:
                stats[int(entry)] = stat
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in stats.items():
            children.setdefault(ppid, []).append(pid)
        found: dict[int, str] = {}
        todo = [self._root]
        while todo:
            pid = todo.pop()
            cmdline = _cmdline(pid)
            match = _SERVICE.search(cmdline)
            found[pid] = match.group(1).decode() if match else "nats" if b"nats-server" in cmdline else "berth up"
            todo += children.get(pid, [])
        for pid in stats:
            if pid in found:
                continue
            cmdline = _cmdline(pid)
            if self._mark in cmdline:
                found[pid] = "nats" if b"nats-server" in cmdline else "other"
            elif cmdline.startswith(b"postgres: ") and self._db in cmdline:
                found[pid] = "postgres"
        with self._lock:
            for pid, name in found.items():
                if pid in stats:
                    self._seen[pid] = (name, stats[pid][1])


def per_item(before: Counter[str], after: Counter[str], items: int) -> dict[str, float]:
    """Returns the CPU milliseconds per item of each name between two marks, largest first."""
    spent = {name: (after[name] - before.get(name, 0.0)) * 1000 / max(items, 1) for name in after}
    return dict(sorted(((n, ms) for n, ms in spent.items() if ms > 0), key=lambda kv: -kv[1]))
