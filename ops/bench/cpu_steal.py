"""The share of CPU time the hypervisor took from this virtual machine over a stretch (``StealMeter``,
/proc/stat's ``steal``).

A shared machine changes speed between minutes (on the 2-core development machine, the raw PostgreSQL
rates of one hour differed twofold, and in one run every process, the benchmark's own clients included,
spent a third more CPU per session in the last round than in the first). A figure compared across the
phases of one run (bench_api's aging, round 5 ÷ round 1) is read next to the steal of each phase: a
machine that was slowed down shows there. The benchmark's own clients, whose work per session is the
same in every phase, are the other witness (their CPU ms per session in bench_api's table).
"""

from __future__ import annotations

__all__ = ["StealMeter"]


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
