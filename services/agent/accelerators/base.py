"""The accelerator plugin interface: what a device family (CUDA, a mock of it) tells the agent.

A small cousin of Backend.AI's ``AbstractComputePlugin``: a plugin names its ``key`` (the slot
prefix, e.g. ``cuda``) and the slots it offers, lists its devices, sums them into slots and
gives the environment a kernel needs to see the devices allocated to it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from decimal import Decimal

import msgspec

from contracts.slots import ResourceSlots, SlotType

__all__ = ["AcceleratorError", "AcceleratorPlugin", "Device"]


class AcceleratorError(ValueError):
    """Raised when an accelerator setting is malformed or names an unknown plugin."""


class Device(msgspec.Struct, frozen=True, kw_only=True):
    """One device of a plugin: its id on this node (what ``CUDA_VISIBLE_DEVICES`` takes), its
    memory in bytes, the shares it offers to fractional slots, and descriptive fields."""

    device_id: str
    memory: int = 0
    shares: Decimal = Decimal(1)
    uuid: str = ""
    model: str = ""


class AcceleratorPlugin(ABC):
    """A family of devices on this node. ``slot_types`` holds exactly one slot: ``<key>.device``
    (whole devices) or ``<key>.shares`` (fractions of devices)."""

    key: str = "abstract"
    """The slot prefix of the plugin's devices (``cuda``)."""

    slot_types: tuple[tuple[str, SlotType], ...] = ()
    """The slots the plugin offers, with their types."""

    @property
    def slot(self) -> str:
        """Returns the single slot the plugin offers."""
        (name, _), = self.slot_types
        return name

    @property
    def fractional(self) -> bool:
        """Returns True when the plugin's slot is a fractional ``<key>.shares`` slot."""
        return self.slot.endswith(".shares")

    @abstractmethod
    async def list_devices(self) -> list[Device]:
        """Returns the devices present on this node (empty when there are none)."""

    async def available_slots(self) -> ResourceSlots:
        """Returns the plugin's capacity: the number of devices, or the sum of their shares.
        A plugin without devices offers nothing (an empty dict)."""
        devices = await self.list_devices()
        if not devices:
            return {}
        if self.fractional:
            return {self.slot: sum((d.shares for d in devices), Decimal(0))}
        return {self.slot: Decimal(len(devices))}

    def generate_env(self, device_ids: Sequence[str]) -> dict[str, str]:
        """Returns the environment that shows a kernel exactly ``device_ids``
        (``<KEY>_VISIBLE_DEVICES``)."""
        return {f"{self.key.upper()}_VISIBLE_DEVICES": ",".join(device_ids)}

    def describe(self) -> str:
        """Returns a short description for logs."""
        return f"{type(self).__name__}({self.slot})"
