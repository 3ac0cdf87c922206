"""Who a kernel runs as and how much scratch space it gets: pure, from the agent's settings.

* The user (``BERTH_KERNEL_USER``, ``uid:gid``): never root. ``auto`` is Backend.AI's ``work`` user,
  1000:1000, when the agent runs as root (it hands the kernel's socket directory to that user while
  the runner starts), else the agent's own uid:gid (a non-root agent cannot hand a directory to
  another user).
* The scratch (``BERTH_KERNEL_SCRATCH`` for ``/home/work``, ``BERTH_KERNEL_TMP`` for ``/tmp``): tmpfs
  mounts of that size (Backend.AI's ``scratch_type=memory``). Nothing a kernel writes reaches the
  host's disk, and the pages count against the kernel's memory limit; so that a full scratch ends in
  ENOSPC rather than an OOM kill, ``/home/work`` is at most half of the ``mem`` slot and ``/tmp`` at
  most a quarter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from contracts.slots import SlotError, parse_amount
from services.common.kernel_user import AUTO_USER, WORK_USER, KernelUser, kernel_user

__all__ = [
    "AUTO_USER", "MIN_SCRATCH", "WORK_USER", "KernelUser", "Scratch", "bounded_by_slots", "kernel_user", "scratch_sizes",
]

MIN_SCRATCH = 1024 * 1024
"""The smallest scratch mount (1 MiB): less would leave a kernel no room for a single file."""


@dataclass(frozen=True)
class Scratch:
    """The sizes, in bytes, of a kernel's ``/home/work`` and ``/tmp`` tmpfs mounts."""

    work: int
    tmp: int


def _size(name: str, value: str) -> int:
    try:
        size = int(parse_amount("mem", value))
    except SlotError as exc:
        raise ValueError(f"{name} must be a size such as '1g' or '256m', got {value!r}") from exc
    if size < MIN_SCRATCH:
        raise ValueError(f"{name}={value} is below the minimum of 1 MiB")
    return size


def scratch_sizes(work: str, tmp: str) -> Scratch:
    """Returns the configured sizes (``BERTH_KERNEL_SCRATCH``, ``BERTH_KERNEL_TMP``); ValueError naming
    the setting when one is malformed or under 1 MiB."""
    return Scratch(work=_size("BERTH_KERNEL_SCRATCH", work), tmp=_size("BERTH_KERNEL_TMP", tmp))


def bounded_by_slots(scratch: Scratch, slots: Mapping[str, Decimal]) -> Scratch:
    """Returns ``scratch`` capped by the kernel's ``mem`` slot: ``/home/work`` at half of it, ``/tmp`` at a
    quarter (never under 1 MiB); unchanged without a ``mem`` slot."""
    mem = int(Decimal(slots.get("mem", 0)))
    if mem <= 0:
        return scratch
    return Scratch(work=max(MIN_SCRATCH, min(scratch.work, mem // 2)), tmp=max(MIN_SCRATCH, min(scratch.tmp, mem // 4)))
