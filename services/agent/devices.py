"""Chooses the concrete devices of each kernel's accelerator slots, and gives them back.

``cuda.device: N`` gets N distinct whole devices (lowest ids first); ``cuda.shares: x`` gets x
shares (in quanta of 0.1) on the free device that fits it most tightly, or spread over several
devices when none fits alone. Allocations are per kernel id and idempotent, and after an agent
restart they can be rebuilt from what running containers recorded (``restore``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

import msgspec

from services.agent.accelerators.base import AcceleratorPlugin
from services.agent.backends.base import KernelStartError

__all__ = ["QUANTUM", "Allocation", "DeviceAllocationError", "DeviceAllocator", "DevicePool"]

QUANTUM = Decimal("0.1")
"""The smallest fraction of a device a ``.shares`` slot may ask for."""


class DeviceAllocationError(KernelStartError):
    """Raised when a kernel's accelerator slots cannot be served by this node's free devices;
    the agent reports the kernel as failed to start."""


class Allocation(msgspec.Struct, frozen=True, kw_only=True):
    """The devices of one kernel: device ids per slot, and the shares taken on each device of a
    fractional slot."""

    devices: dict[str, list[str]] = {}
    shares: dict[str, dict[str, Decimal]] = {}


def _order(device_id: str) -> tuple[int, int | str]:
    return (0, int(device_id)) if device_id.isdigit() else (1, device_id)


class DevicePool:
    """The devices of one plugin's slot and what each has left (1 or 0 for whole devices)."""

    def __init__(self, plugin: AcceleratorPlugin, capacity: Mapping[str, Decimal]) -> None:
        self.plugin = plugin
        self.slot = plugin.slot
        self.fractional = plugin.fractional
        self.capacity = {d: capacity[d] for d in sorted(capacity, key=_order)}
        self.free = dict(self.capacity)

    def take(self, amount: Decimal) -> dict[str, Decimal]:
        """Returns the amount taken per device, or raises ``DeviceAllocationError``; takes nothing then."""
        if self.fractional:
            return self._take_shares(amount)
        if amount != amount.to_integral_value():
            raise DeviceAllocationError(f"{self.slot} counts whole devices, got {amount}")
        idle = [d for d, left in self.free.items() if left == self.capacity[d]]
        if len(idle) < amount:
            raise DeviceAllocationError(f"{self.slot}: {amount} requested, {len(idle)} of "
                                        f"{len(self.capacity)} devices free")
        taken = {d: self.capacity[d] for d in idle[: int(amount)]}
        self.hold(taken)
        return taken

    def _take_shares(self, amount: Decimal) -> dict[str, Decimal]:
        if amount % QUANTUM != 0:
            raise DeviceAllocationError(f"{self.slot}: {amount} is not a multiple of the quantum {QUANTUM}")
        total = sum(self.free.values(), Decimal(0))
        if amount > total:
            raise DeviceAllocationError(f"{self.slot}: {amount} requested, {total} free")
        fitting = [d for d, left in self.free.items() if left >= amount]
        if fitting:
            taken = {min(fitting, key=lambda d: self.free[d]): amount}
        else:
            taken, remaining = {}, amount
            for device in sorted(self.free, key=lambda d: -self.free[d]):
                part = min(self.free[device], remaining)
                if part > 0:
                    taken[device], remaining = part, remaining - part
        self.hold(taken)
        return taken

    def give(self, taken: Mapping[str, Decimal]) -> None:
        """Returns what ``take`` gave (never more than a device's capacity)."""
        for device, amount in taken.items():
            if device in self.free:
                self.free[device] = min(self.capacity[device], self.free[device] + amount)

    def hold(self, taken: Mapping[str, Decimal]) -> None:
        """Marks amounts per device as taken (``take`` and ``restore`` call this)."""
        for device, amount in taken.items():
            self.free[device] -= amount


class DeviceAllocator:
    """Allocates devices of the agent's accelerator plugins to kernels."""

    def __init__(self, pools: Sequence[DevicePool] = ()) -> None:
        self._pools = {pool.slot: pool for pool in pools}
        self._kernels: dict[str, tuple[Allocation, dict[str, dict[str, Decimal]]]] = {}

    @classmethod
    async def from_plugins(cls, plugins: Sequence[AcceleratorPlugin]) -> DeviceAllocator:
        """Returns an allocator over the devices the plugins list now (plugins without devices
        add nothing)."""
        pools = []
        for plugin in plugins:
            devices = await plugin.list_devices()
            if devices:
                capacity = {d.device_id: (d.shares if plugin.fractional else Decimal(1)) for d in devices}
                pools.append(DevicePool(plugin, capacity))
        return cls(pools)

    def capacity(self) -> dict[str, Decimal]:
        """Returns the accelerator slots this node offers (devices, or the sum of shares)."""
        return {slot: sum(pool.capacity.values(), Decimal(0)) for slot, pool in self._pools.items()}

    def free(self) -> dict[str, Decimal]:
        """Returns what is left of each accelerator slot."""
        return {slot: sum(pool.free.values(), Decimal(0)) for slot, pool in self._pools.items()}

    def allocate(self, kernel_id: str, slots: Mapping[str, Decimal]) -> Allocation:
        """Returns the kernel's devices, allocating them on the first call; raises
        ``DeviceAllocationError`` (allocating nothing) when a slot cannot be served."""
        if kernel_id in self._kernels:
            return self._kernels[kernel_id][0]
        wanted = {s: Decimal(a) for s, a in sorted(slots.items()) if "." in s and a > 0}
        taken: dict[str, dict[str, Decimal]] = {}
        try:
            for slot, amount in wanted.items():
                pool = self._pools.get(slot)
                if pool is None:
                    raise DeviceAllocationError(f"{slot}: {amount} requested, but this node has no such devices")
                taken[slot] = pool.take(amount)
        except DeviceAllocationError as exc:
            self._give(taken)
            raise DeviceAllocationError(f"kernel {kernel_id}: {exc}") from None
        return self._remember(kernel_id, taken)

    def restore(self, kernel_id: str, devices: Mapping[str, Sequence[str]],
                slots: Mapping[str, Decimal] | None = None) -> Allocation:
        """Records devices a running kernel already holds (read back from its container after a
        restart). For a ``.shares`` slot the kernel's amount (``slots``) is spread over the listed
        devices in order; whole devices are taken entirely. Unknown slots or devices are ignored."""
        if kernel_id in self._kernels:
            return self._kernels[kernel_id][0]
        taken: dict[str, dict[str, Decimal]] = {}
        for slot, ids in devices.items():
            pool = self._pools.get(slot)
            if pool is None:
                continue
            known = [d for d in ids if d in pool.capacity]
            if pool.fractional:
                remaining = Decimal((slots or {}).get(slot, sum((pool.capacity[d] for d in known), Decimal(0))))
                part: dict[str, Decimal] = {}
                for device in known:
                    share = min(pool.free[device], remaining)
                    part[device], remaining = share, remaining - share
            else:
                part = {d: pool.free[d] for d in known}
            pool.hold(part)
            taken[slot] = part
        return self._remember(kernel_id, taken)

    def release(self, kernel_id: str) -> None:
        """Gives the kernel's devices back; releasing an unknown kernel does nothing."""
        entry = self._kernels.pop(kernel_id, None)
        if entry is not None:
            self._give(entry[1])

    def allocation(self, kernel_id: str) -> Allocation | None:
        """Returns the kernel's devices, None when it holds none here."""
        entry = self._kernels.get(kernel_id)
        return entry[0] if entry else None

    def env(self, allocation: Allocation) -> dict[str, str]:
        """Returns the environment of an allocation: each plugin's variables
        (``CUDA_VISIBLE_DEVICES``), ``BERTH_<KEY>_DEVICES`` and, for shares, ``BERTH_<KEY>_SHARES``."""
        env: dict[str, str] = {}
        for slot, ids in allocation.devices.items():
            plugin = self._pools[slot].plugin
            env.update(plugin.generate_env(ids))
            env[f"BERTH_{plugin.key.upper()}_DEVICES"] = ",".join(ids)
            if slot in allocation.shares:
                env[f"BERTH_{plugin.key.upper()}_SHARES"] = str(sum(allocation.shares[slot].values(), Decimal(0)))
        return env

    def _remember(self, kernel_id: str, taken: dict[str, dict[str, Decimal]]) -> Allocation:
        allocation = Allocation(
            devices={slot: sorted(part, key=_order) for slot, part in taken.items() if part},
            shares={slot: dict(part) for slot, part in taken.items() if part and self._pools[slot].fractional},
        )
        self._kernels[kernel_id] = (allocation, taken)
        return allocation

    def _give(self, taken: Mapping[str, Mapping[str, Decimal]]) -> None:
        for slot, part in taken.items():
            self._pools[slot].give(part)
