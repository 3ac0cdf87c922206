"""Exact scaled integers for slot amounts within one pass.

Decimal arithmetic in the hot loops of a pass is slow, so a pass converts every
amount once. Each slot gets the smallest power of ten that makes all of its amounts
seen in the pass integral (``cpu`` 0.5 and 2 -> scale 10: 5 and 20; ``mem`` in bytes ->
scale 1), so the integers add and compare exactly as the Decimals they stand for.
Nothing is rounded: the conversion works in a 200-digit context.
"""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Iterable, Mapping

__all__ = ["SlotScale", "Sparse", "add_sparse"]

Sparse = tuple[tuple[int, int], ...]
"""The positive amounts of a request as ``(slot index, scaled amount)``, by slot index."""

_EXACT = decimal.Context(prec=200)


def _digits(name: str, amounts: Iterable[Decimal]) -> int:
    digits = 0
    for amount in amounts:
        if not amount.is_finite():
            raise ValueError(f"slot {name!r}: amount {amount} is not a finite number")
        exponent = amount.normalize(_EXACT).as_tuple().exponent
        assert isinstance(exponent, int)
        digits = max(digits, -exponent)
    return digits


def add_sparse(a: Sparse, b: Sparse) -> Sparse:
    """Returns the slot-wise sum of two sparse requests."""
    if not a:
        return b
    total = dict(a)
    for index, amount in b:
        total[index] = total.get(index, 0) + amount
    return tuple(sorted(total.items()))


class SlotScale:
    """The slots of one pass, each with its index and its power of ten."""

    __slots__ = ("names", "index", "_digits")

    def __init__(self, digits: Mapping[str, int]) -> None:
        self.names: list[str] = sorted(digits)
        self.index: dict[str, int] = {name: i for i, name in enumerate(self.names)}
        self._digits: list[int] = [digits[name] for name in self.names]

    @classmethod
    def covering(cls, slot_maps: Iterable[Mapping[str, Decimal]]) -> SlotScale:
        """Returns the scale that makes every amount of ``slot_maps`` integral.

        Raises ``ValueError`` for an infinite or NaN amount. Negative amounts convert
        exactly too (an over-released usage is the caller's to judge).
        """
        seen: dict[str, set[Decimal]] = {}
        for slots in slot_maps:
            for name, amount in slots.items():
                bucket = seen.get(name)
                if bucket is None:
                    seen[name] = bucket = set()
                bucket.add(amount)
        return cls({name: _digits(name, amounts) for name, amounts in seen.items()})

    @property
    def size(self) -> int:
        """Returns the number of slots of the pass."""
        return len(self.names)

    def scaled(self, name: str, amount: Decimal) -> int:
        """Returns ``amount`` of slot ``name`` as a scaled integer (the slot must be covered)."""
        digits = self._digits[self.index[name]]
        return int(amount) if digits == 0 else int(amount.scaleb(digits, _EXACT))

    def dense(self, slots: Mapping[str, Decimal]) -> list[int]:
        """Returns one scaled integer per slot of the pass (0 where ``slots`` has none)."""
        vector = [0] * len(self.names)
        index, digits = self.index, self._digits
        for name, amount in slots.items():
            i = index[name]
            vector[i] = int(amount) if digits[i] == 0 else int(amount.scaleb(digits[i], _EXACT))
        return vector

    def sparse(self, slots: Mapping[str, Decimal]) -> Sparse:
        """Returns the positive amounts of ``slots`` as a sparse request."""
        index, digits = self.index, self._digits
        items = []
        for name, amount in slots.items():
            i = index[name]
            value = int(amount) if digits[i] == 0 else int(amount.scaleb(digits[i], _EXACT))
            if value > 0:
                items.append((i, value))
        items.sort()
        return tuple(items)

    def amount(self, index: int, value: int) -> Decimal:
        """Returns the Decimal a scaled integer of slot ``index`` stands for."""
        return Decimal(value).scaleb(-self._digits[index], _EXACT)

    def slots(self, request: Sparse) -> dict[str, Decimal]:
        """Returns a sparse request back as named Decimal slots (for messages and tests)."""
        return {self.names[i]: self.amount(i, value) for i, value in request}
