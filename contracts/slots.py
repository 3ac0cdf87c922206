"""Resource slots: named amounts of resources, always ``Decimal``, never floats.

Slot names follow Backend.AI: intrinsic ``cpu`` (cores) and ``mem`` (bytes), and
accelerator slots prefixed by their plugin key (``cuda.device``, ``cuda.shares``).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Iterable, Mapping

__all__ = [
    "KNOWN_SLOTS",
    "ResourceSlots",
    "SlotError",
    "SlotType",
    "add_slots",
    "fits",
    "parse_amount",
    "parse_slots",
    "subtract_slots",
    "sum_slots",
]

ResourceSlots = dict[str, Decimal]


class SlotError(ValueError):
    """Raised when a resource slot name or amount is invalid."""


class SlotType(str, Enum):
    COUNT = "count"
    BYTES = "bytes"


KNOWN_SLOTS: dict[str, SlotType] = {
    "cpu": SlotType.COUNT,
    "mem": SlotType.BYTES,
    "cuda.device": SlotType.COUNT,
    "cuda.shares": SlotType.COUNT,
}

_BINARY_UNITS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
_AMOUNT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_amount(slot: str, value: str | int | Decimal) -> Decimal:
    """Returns the amount for ``slot``; byte slots accept units such as ``"4g"`` or ``"256MiB"``."""
    if slot not in KNOWN_SLOTS:
        raise SlotError(f"unknown resource slot {slot!r} (known: {', '.join(sorted(KNOWN_SLOTS))})")
    if isinstance(value, float):
        raise SlotError(f"slot {slot!r}: floats are not accepted, use a string or Decimal")
    if isinstance(value, (int, Decimal)):
        amount = Decimal(value)
    else:
        match = _AMOUNT.match(value)
        if not match:
            raise SlotError(f"slot {slot!r}: cannot parse amount {value!r}")
        number, unit = match.groups()
        if unit and KNOWN_SLOTS[slot] is not SlotType.BYTES:
            raise SlotError(f"slot {slot!r} is a count and takes no unit: {value!r}")
        try:
            amount = Decimal(number) * (1024 ** _BINARY_UNITS[unit.lower()])
        except InvalidOperation as exc:  # pragma: no cover - the regex guards this
            raise SlotError(f"slot {slot!r}: cannot parse amount {value!r}") from exc
    if not amount.is_finite() or amount < 0:
        raise SlotError(f"slot {slot!r}: amount must be a non-negative number, got {value!r}")
    if KNOWN_SLOTS[slot] is SlotType.BYTES:
        amount = amount.to_integral_value()
    return amount


def parse_slots(raw: Mapping[str, str | int | Decimal]) -> ResourceSlots:
    """Returns validated slots; raises ``SlotError`` naming the first bad entry."""
    return {name: parse_amount(name, value) for name, value in sorted(raw.items())}


_ZERO = Decimal(0)
"""The amount of a slot that a mapping leaves out (one constant: these run on every event of the scheduler)."""


def add_slots(a: Mapping[str, Decimal], b: Mapping[str, Decimal]) -> ResourceSlots:
    """Returns the slot-wise sum of ``a`` and ``b``."""
    return {k: a.get(k, _ZERO) + b.get(k, _ZERO) for k in sorted(a.keys() | b.keys())}


def sum_slots(terms: Iterable[Mapping[str, Decimal]]) -> ResourceSlots:
    """Returns the slot-wise sum of ``terms`` ({} when there are none), in one pass: what a ``reduce``
    of ``add_slots`` gives, without a sorted dict per term."""
    total: ResourceSlots = {}
    for amounts in terms:
        for name, amount in amounts.items():
            total[name] = total.get(name, _ZERO) + amount
    return dict(sorted(total.items()))


def subtract_slots(a: Mapping[str, Decimal], b: Mapping[str, Decimal]) -> ResourceSlots:
    """Returns the slot-wise difference ``a - b`` (may be negative)."""
    return {k: a.get(k, _ZERO) - b.get(k, _ZERO) for k in sorted(a.keys() | b.keys())}


def fits(request: Mapping[str, Decimal], free: Mapping[str, Decimal]) -> bool:
    """Returns True when every requested amount is available in ``free``."""
    return all(amount <= free.get(name, _ZERO) for name, amount in request.items() if amount > 0)
