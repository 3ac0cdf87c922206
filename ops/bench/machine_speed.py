"""The machine's speed at a moment: a fixed pure-Python workload, timed (``probe_ms``); and the share of
CPU time the hypervisor took from this virtual machine over a stretch (``StealMeter``, /proc/stat's
``steal``).

A shared or throttled machine changes speed between minutes (on the 2-core development machine, the
raw PostgreSQL rates of one hour differed twofold, and every process, the benchmark's own clients
included, spent a third more CPU per session in one run's last round than in its first). A figure
compared across phases of one run (bench_api's aging, round 5 ÷ round 1) is then read next to the
same ratio of this probe, taken just before each phase: a slower machine shows in both.
"""

from __future__ import annotations

import statistics
import time

__all__ = ["StealMeter", "probe_ms"]

WORK = 200_000
"""Iterations of the probe's loop (about 10-20 ms of one core)."""


def _work() -> int:
    total = 0
    for i in range(WORK):
        total += (i * i) % 7
    return total


def probe_ms(repeat: int = 20) -> float:
    """Returns the median milliseconds of ``repeat`` runs of the fixed workload (lower: faster)."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        _work()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def _cpu_times() -> tuple[int, int]:
    """Returns (steal, total) jiffies of all CPUs so far (0, 0 where /proc/stat does not say)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    steal = fields[7] if len(fields) > 7 else 0
    return steal, sum(fields[:8])


class StealMeter:
    """``meter.share()``: the share of all CPU time stolen by the hypervisor since the meter was made."""

    def __init__(self) -> None:
        self._start = _cpu_times()

    def share(self) -> float:
        steal, total = _cpu_times()
        elapsed = total - self._start[1]
        return (steal - self._start[0]) / elapsed if elapsed > 0 else 0.0
