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
    "COUNT_PLACES",
    "KNOWN_SLOTS",
    "MAX_BYTES",
    "MAX_COUNT",
    "MIN_KERNEL_CPU",
    "WIDE_PRECISION",
    "ResourceSlots",
    "SlotError",
    "SlotType",
    "add_slots",
    "check_kernel_slots",
    "fits",
    "parse_amount",
    "parse_slots",
    "stored_slots",
    "summed_slots",
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

MAX_BYTES = Decimal(2**63 - 1)
"""The largest amount of a byte slot (8 EiB: what a 64-bit size holds, and more memory than any node has)."""
MAX_COUNT = Decimal(10**9)
"""The largest amount of a count slot (a billion cores or devices)."""
COUNT_PLACES = 6
"""Decimal places of a count slot, at most (``cuda.shares`` of 0.000001 of a device)."""
_COUNT_QUANTUM = Decimal(1).scaleb(-COUNT_PLACES)
WIDE_PRECISION = 100
"""Digits of the decimal context in which an amount is rounded or formatted (``localcontext(prec=...)``): the
default 28 refuse to quantize the amounts that histories recorded before these bounds may hold (80 digits)."""

_BINARY_UNITS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
_AMOUNT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_amount(slot: str, value: str | int | Decimal) -> Decimal:
    """Returns the amount for ``slot``, within its bounds; byte slots accept units such as ``"4g"`` or
    ``"256MiB"``."""
    return _bounded(slot, _amount(slot, value), value)


def _amount(slot: str, value: str | int | Decimal) -> Decimal:
    """Returns ``value`` as a finite, non-negative ``Decimal`` of the known ``slot`` (units taken for bytes);
    SlotError else. No bounds: ``parse_amount`` adds them for input, ``summed_slots`` does not for sums."""
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
    return amount


def _bounded(slot: str, amount: Decimal, value: object) -> Decimal:
    """Returns ``amount`` (bytes: to the byte) when it is within the slot's bounds; SlotError else. Every sum
    and share the scheduler and quotas compute of bounded amounts stays exact in 28 digits: an amount of 51
    digits made formatting a pending reason fail, and with it every scheduling pass."""
    if KNOWN_SLOTS[slot] is SlotType.BYTES:
        if amount > MAX_BYTES:
            raise SlotError(f"slot {slot!r}: at most {MAX_BYTES} bytes (8 EiB), got {value!r}")
        return amount.to_integral_value()
    if amount > MAX_COUNT:
        raise SlotError(f"slot {slot!r}: at most {MAX_COUNT}, got {value!r}")
    if amount != amount.quantize(_COUNT_QUANTUM):
        raise SlotError(f"slot {slot!r}: at most {COUNT_PLACES} decimal places, got {value!r}")
    return amount


def summed_slots(raw: Mapping[str, str | int | Decimal]) -> ResourceSlots:
    """Returns the slots of a sum the platform computed (a session's total over its kernels, what a quota holds):
    known names, finite non-negative ``Decimal`` amounts, but not the bounds of one amount as input
    (``parse_slots``): 64 kernels of the largest amount each sum to more than one may ask for."""
    return {name: _amount(name, value) for name, value in sorted(raw.items())}


def stored_slots(stored: Mapping[str, str]) -> ResourceSlots:
    """Returns slots as a read model stores them (``str`` of each ``Decimal``, which may be ``1E-8``): what was
    recorded is read back as is, whatever bounds input has today (``parse_slots`` is for input)."""
    return {name: Decimal(amount) for name, amount in stored.items()}


def parse_slots(raw: Mapping[str, str | int | Decimal]) -> ResourceSlots:
    """Returns validated slots; raises ``SlotError`` naming the first bad entry."""
    return {name: parse_amount(name, value) for name, value in sorted(raw.items())}


_ZERO = Decimal(0)
"""The amount of a slot that a mapping leaves out (one constant: these run on every event of the scheduler)."""

MIN_KERNEL_CPU = Decimal("0.01")
"""The least ``cpu`` a kernel may ask for, 0 (no limit) aside: a CFS quota of 1 ms per 100 ms period, the least Linux
enforces (Docker refuses less), so no backend that limits CPU can start a kernel asked for less; the process and
simulated backends limit none, so refusing it loses nothing there."""


def check_kernel_slots(slots: Mapping[str, Decimal]) -> None:
    """Raises SlotError when a kernel's parsed slots ask for what no kernel can be given (a ``cpu`` below
    ``MIN_KERNEL_CPU``): refused at the request (the Session aggregate's, whoever issues it), not when the kernel
    starts."""
    cpu = slots.get("cpu", _ZERO)
    if _ZERO < cpu < MIN_KERNEL_CPU:
        raise SlotError(f"slot 'cpu': a kernel gets at least {MIN_KERNEL_CPU} cores (the least a CPU limit can be), "
                        f"got {cpu}")


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
