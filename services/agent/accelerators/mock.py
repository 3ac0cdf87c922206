"""A plugin of fake CUDA devices for machines without GPUs (Backend.AI's ``mock`` accelerator).

Spec (after ``mock:``): ``cuda.device=4`` (four whole devices) or ``cuda.shares=2.5`` (three
devices offering 1.0, 1.0 and 0.5 shares), optionally ``;memory=16g`` (per device). Containers
get ``CUDA_VISIBLE_DEVICES`` with the fake ids and no device mounts.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

from contracts.slots import KNOWN_SLOTS, SlotError, parse_amount
from services.agent.accelerators.base import AcceleratorError, AcceleratorPlugin, Device

__all__ = ["MockPlugin"]

DEFAULT_MEMORY = 16 * 1024**3


class MockPlugin(AcceleratorPlugin):
    """Offers ``amount`` fake devices (``<key>.device``) or shares (``<key>.shares``)."""

    def __init__(self, slot: str, amount: Decimal, memory: int = DEFAULT_MEMORY) -> None:
        key, _, kind = slot.partition(".")
        if kind not in ("device", "shares") or slot not in KNOWN_SLOTS:
            raise AcceleratorError(f"mock accelerator: {slot!r} is not an accelerator slot "
                                   "('<key>.device' or '<key>.shares', e.g. 'cuda.device')")
        if amount <= 0:
            raise AcceleratorError(f"mock accelerator: {slot} must be positive, got {amount}")
        if kind == "device" and amount != amount.to_integral_value():
            raise AcceleratorError(f"mock accelerator: {slot} counts whole devices, got {amount}")
        self.key = key
        self.slot_types = ((slot, KNOWN_SLOTS[slot]),)
        self.amount = amount
        self.memory = memory

    @classmethod
    def from_spec(cls, options: str) -> MockPlugin:
        """Returns the plugin of ``"cuda.device=4"`` / ``"cuda.shares=2.0;memory=8g"``."""
        slot, amount, memory = "", Decimal(0), DEFAULT_MEMORY
        for item in filter(None, (part.strip() for part in options.split(";"))):
            name, sep, value = (s.strip() for s in item.partition("="))
            if not sep or not name or not value:
                raise AcceleratorError(f"mock accelerator {options!r}: expected name=value, got {item!r}")
            try:
                if name == "memory":
                    memory = int(parse_amount("mem", value))
                elif slot:
                    raise AcceleratorError(f"mock accelerator {options!r}: give one slot, not {slot!r} and {name!r}")
                else:
                    slot, amount = name, parse_amount(name, value)
            except SlotError as exc:
                raise AcceleratorError(f"mock accelerator {options!r}: {exc}") from exc
        if not slot:
            raise AcceleratorError(f"mock accelerator {options!r}: needs a slot, e.g. 'mock:cuda.device=4'")
        return cls(slot, amount, memory)

    async def list_devices(self) -> list[Device]:
        """Returns the fake devices ``"0"``, ``"1"``, …; with shares, each offers 1.0 but the last
        offers what remains."""
        count = int(self.amount.to_integral_value(rounding=ROUND_CEILING))
        devices = []
        for index in range(count):
            shares = min(Decimal(1), self.amount - index) if self.fractional else Decimal(1)
            devices.append(Device(device_id=str(index), memory=self.memory, shares=shares,
                                  uuid=f"MOCK-{self.key.upper()}-{index}", model=f"Mock {self.key.upper()} device"))
        return devices

    def describe(self) -> str:
        """Returns e.g. ``mock(cuda.device=4)``."""
        return f"mock({self.slot}={self.amount})"
