"""The agent's capacity: the ``cpu=4,mem=8g`` setting, or ``auto`` detection minus reservations.

``auto`` takes the CPUs this process may use (its affinity, capped by a cgroup CPU quota) less
``BERTH_AGENT_RESERVED_CPU``, and the memory (``MemTotal`` in /proc/meminfo, capped by a cgroup
memory limit) less ``BERTH_AGENT_RESERVED_MEM``. Accelerator slots come from the plugins and are
added to either; an explicit setting wins for a slot it names.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path

from contracts.slots import ResourceSlots, SlotError, parse_amount, parse_slots

__all__ = [
    "AUTO",
    "CapacityError",
    "cgroup_cpu_limit",
    "cgroup_mem_limit",
    "detect_capacity",
    "detected_cpus",
    "mem_total",
    "parse_capacity",
    "resolve_capacity",
]

AUTO = "auto"
CGROUP_ROOT = Path("/sys/fs/cgroup")
log = logging.getLogger(__name__)
_UNLIMITED_V1 = 1 << 60
"""cgroup v1 reports "no memory limit" as a huge number (about 2**63); anything above this is none."""


class CapacityError(ValueError):
    """Raised when the capacity setting (BERTH_AGENT_CAPACITY) or a reservation is malformed,
    or when the reservations leave nothing."""


def parse_capacity(text: str) -> ResourceSlots:
    """Returns the slots of ``"cpu=4,mem=8g"``; raises ``CapacityError`` naming what is wrong."""
    raw: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, amount = item.partition("=")
        name, amount = name.strip(), amount.strip()
        if not sep or not name or not amount:
            raise CapacityError(f"agent capacity {text!r}: expected name=amount pairs such as 'cpu=4,mem=8g', got {item!r}")
        if name in raw:
            raise CapacityError(f"agent capacity {text!r}: slot {name!r} is given twice")
        raw[name] = amount
    try:
        slots = parse_slots(raw)
    except SlotError as exc:
        raise CapacityError(f"agent capacity {text!r}: {exc}") from exc
    if slots.get("cpu", 0) <= 0 or slots.get("mem", 0) <= 0:
        raise CapacityError(f"agent capacity {text!r}: needs positive 'cpu' and 'mem' slots")
    return slots


def mem_total(meminfo: str) -> int:
    """Returns ``MemTotal`` of /proc/meminfo text in bytes."""
    for line in meminfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "MemTotal":
            number, _, unit = value.strip().partition(" ")
            if number.isdigit() and unit.strip() in ("kB", ""):
                return int(number) * (1024 if unit.strip() == "kB" else 1)
            raise CapacityError(f"cannot read MemTotal from /proc/meminfo line {line!r}")
    raise CapacityError("/proc/meminfo has no MemTotal line")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> Decimal | None:
    """Returns the CPUs a cgroup quota allows (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us``), None when there is no quota."""
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        if quota.isdigit() and period.isdigit() and int(period) > 0:
            return Decimal(quota) / Decimal(period)
        return None
    quota, period = _read(root / "cpu" / "cpu.cfs_quota_us"), _read(root / "cpu" / "cpu.cfs_period_us")
    if quota and period and quota.isdigit() and period.isdigit() and int(period) > 0:
        return Decimal(quota) / Decimal(period)
    return None


def cgroup_mem_limit(root: Path = CGROUP_ROOT) -> int | None:
    """Returns the cgroup memory limit in bytes (v2 ``memory.max``, v1
    ``memory.limit_in_bytes``), None when there is none."""
    for path in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):
        value = _read(path)
        if value is not None:
            return int(value) if value.isdigit() and int(value) < _UNLIMITED_V1 else None
    return None


def detected_cpus(root: Path = CGROUP_ROOT, count: Decimal | int | None = None) -> Decimal:
    """Returns the CPUs this process may use: ``count`` or its affinity (or ``os.cpu_count()``),
    capped by a cgroup quota."""
    if count is None:
        try:
            count = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # not Linux
            count = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    return Decimal(count) if limit is None else min(Decimal(count), limit)


def detect_capacity(cpus: Decimal | int, mem: int, reserved_cpu: str = "0", reserved_mem: str = "0") -> ResourceSlots:
    """Returns ``{cpu, mem}`` of ``cpus`` and ``mem`` bytes less the reservations (``"0.5"``,
    ``"256m"``); raises ``CapacityError`` when a reservation is malformed or leaves nothing."""
    try:
        cpu_less = parse_amount("cpu", reserved_cpu)
        mem_less = parse_amount("mem", reserved_mem)
    except SlotError as exc:
        raise CapacityError(f"agent reservation: {exc}") from exc
    cpu, memory = Decimal(cpus) - cpu_less, Decimal(mem) - mem_less
    if cpu <= 0:
        raise CapacityError(f"BERTH_AGENT_RESERVED_CPU={reserved_cpu!r} leaves no CPU of the {cpus} detected")
    if memory <= 0:
        raise CapacityError(f"BERTH_AGENT_RESERVED_MEM={reserved_mem!r} leaves no memory of the {mem} bytes detected")
    return {"cpu": cpu, "mem": memory}


def resolve_capacity(
    text: str,
    accelerators: Mapping[str, Decimal] | None = None,
    *,
    reserved_cpu: str = "0",
    reserved_mem: str = "0",
    cpus: Decimal | int | None = None,
    meminfo: str | None = None,
    cgroup_root: Path = CGROUP_ROOT,
) -> ResourceSlots:
    """Returns the capacity the agent announces: ``text`` parsed, or detected when it is
    ``auto``, plus the accelerator slots it does not name. ``cpus`` and ``meminfo`` replace
    what the machine says (tests); cgroup limits still cap them."""
    if text.strip().lower() == AUTO:
        cpus = detected_cpus(cgroup_root, cpus)
        if meminfo is None:
            meminfo = Path("/proc/meminfo").read_text()
        mem = mem_total(meminfo)
        limit = cgroup_mem_limit(cgroup_root)
        slots = detect_capacity(cpus, mem if limit is None else min(mem, limit), reserved_cpu, reserved_mem)
    else:
        slots = parse_capacity(text)
    accelerators = accelerators or {}
    for slot in accelerators.keys() & slots.keys():
        if slots[slot] != accelerators[slot]:
            log.warning("agent capacity names %s=%s but the accelerator plugins offer %s; announcing %s",
                        slot, slots[slot], accelerators[slot], slots[slot])
    extra = {slot: amount for slot, amount in accelerators.items() if slot not in slots}
    return dict(sorted({**slots, **extra}.items()))
