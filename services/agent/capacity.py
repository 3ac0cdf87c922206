"""Reads the agent's capacity setting: ``cpu=4,mem=8g`` (Backend.AI slot names and units)."""

from __future__ import annotations

from contracts.slots import ResourceSlots, SlotError, parse_slots

__all__ = ["CapacityError", "parse_capacity"]


class CapacityError(ValueError):
    """Raised when the capacity setting (BERTH_AGENT_CAPACITY) is malformed."""


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
