"""The device allocator: whole devices, fractional shares, release, idempotence and restore."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.agent.accelerators.mock import MockPlugin
from services.agent.devices import DeviceAllocationError, DeviceAllocator, DevicePool

D = Decimal


def allocator(slot: str = "cuda.device", amount: str = "4") -> DeviceAllocator:
    plugin = MockPlugin(slot, D(amount))
    fractional = plugin.fractional
    count = int(D(amount).to_integral_value(rounding="ROUND_CEILING"))
    capacity = {str(i): (min(D(1), D(amount) - i) if fractional else D(1)) for i in range(count)}
    return DeviceAllocator([DevicePool(plugin, capacity)])


async def test_builds_from_plugins() -> None:
    built = await DeviceAllocator.from_plugins([MockPlugin("cuda.shares", D("1.5"))])
    assert built.capacity() == {"cuda.shares": D("1.5")} == built.free()
    assert (await DeviceAllocator.from_plugins([])).capacity() == {}


def test_gives_distinct_whole_devices_lowest_first() -> None:
    alloc = allocator()
    first = alloc.allocate("k1", {"cpu": D(1), "mem": D(1024), "cuda.device": D(2)})
    second = alloc.allocate("k2", {"cuda.device": D(2)})
    assert first.devices == {"cuda.device": ["0", "1"]} and second.devices == {"cuda.device": ["2", "3"]}
    assert alloc.free() == {"cuda.device": D(0)}
    assert alloc.env(first) == {"CUDA_VISIBLE_DEVICES": "0,1", "BERTH_CUDA_DEVICES": "0,1"}


def test_a_kernel_without_accelerator_slots_gets_nothing() -> None:
    alloc = allocator()
    allocation = alloc.allocate("k1", {"cpu": D(1), "mem": D(1024), "cuda.device": D(0)})
    assert allocation.devices == {} and alloc.env(allocation) == {} and alloc.free() == {"cuda.device": D(4)}


def test_exhaustion_fails_clearly_and_takes_nothing() -> None:
    alloc = allocator()
    alloc.allocate("k1", {"cuda.device": D(3)})
    with pytest.raises(DeviceAllocationError, match=r"kernel k2: cuda.device: 2 requested, 1 of 4 devices free"):
        alloc.allocate("k2", {"cuda.device": D(2)})
    assert alloc.free() == {"cuda.device": D(1)} and alloc.allocation("k2") is None


def test_a_failing_slot_rolls_back_the_others() -> None:
    alloc = allocator()
    with pytest.raises(DeviceAllocationError, match="cuda.shares: 0.5 requested, but this node has no such devices"):
        alloc.allocate("k1", {"cuda.device": D(2), "cuda.shares": D("0.5")})
    assert alloc.free() == {"cuda.device": D(4)}


def test_refuses_a_fraction_of_a_whole_device() -> None:
    with pytest.raises(DeviceAllocationError, match="whole devices"):
        allocator().allocate("k1", {"cuda.device": D("1.5")})


def test_release_frees_and_is_idempotent() -> None:
    alloc = allocator()
    alloc.allocate("k1", {"cuda.device": D(4)})
    alloc.release("k1")
    alloc.release("k1")
    alloc.release("never-seen")
    assert alloc.free() == {"cuda.device": D(4)}
    assert alloc.allocate("k2", {"cuda.device": D(4)}).devices == {"cuda.device": ["0", "1", "2", "3"]}


def test_allocating_again_returns_the_same_devices() -> None:
    alloc = allocator()
    first = alloc.allocate("k1", {"cuda.device": D(1)})
    alloc.allocate("k2", {"cuda.device": D(1)})
    assert alloc.allocate("k1", {"cuda.device": D(1)}) == first
    assert alloc.free() == {"cuda.device": D(2)}


def test_shares_go_to_the_tightest_fitting_device() -> None:
    alloc = allocator("cuda.shares", "2.5")  # devices 0, 1 with 1.0 and 2 with 0.5
    a = alloc.allocate("a", {"cuda.shares": D("0.5")})
    b = alloc.allocate("b", {"cuda.shares": D("0.3")})
    c = alloc.allocate("c", {"cuda.shares": D("0.7")})
    assert (a.devices, b.devices, c.devices) == ({"cuda.shares": ["2"]}, {"cuda.shares": ["0"]}, {"cuda.shares": ["0"]})
    assert alloc.env(b) == {"CUDA_VISIBLE_DEVICES": "0", "BERTH_CUDA_DEVICES": "0", "BERTH_CUDA_SHARES": "0.3"}
    assert alloc.free() == {"cuda.shares": D(1)}


def test_shares_spread_when_no_device_fits_alone() -> None:
    alloc = allocator("cuda.shares", "2")
    alloc.allocate("a", {"cuda.shares": D("0.6")})
    spread = alloc.allocate("b", {"cuda.shares": D("1.2")})
    assert spread.devices == {"cuda.shares": ["0", "1"]}
    assert spread.shares == {"cuda.shares": {"1": D(1), "0": D("0.2")}}
    with pytest.raises(DeviceAllocationError, match="0.3 requested, 0.2 free"):
        alloc.allocate("c", {"cuda.shares": D("0.3")})


def test_shares_come_in_quanta() -> None:
    with pytest.raises(DeviceAllocationError, match="not a multiple of the quantum 0.1"):
        allocator("cuda.shares", "1").allocate("k", {"cuda.shares": D("0.25")})


def test_restore_rebuilds_allocations_of_running_kernels() -> None:
    alloc = allocator()
    restored = alloc.restore("k1", {"cuda.device": ["1", "3"], "rocm.device": ["0"]})
    assert restored.devices == {"cuda.device": ["1", "3"]}
    assert alloc.allocate("k1", {"cuda.device": D(2)}) == restored
    assert alloc.allocate("k2", {"cuda.device": D(2)}).devices == {"cuda.device": ["0", "2"]}
    alloc.release("k1")
    assert alloc.free() == {"cuda.device": D(2)}


def test_restore_of_shares_uses_the_kernel_amount() -> None:
    alloc = allocator("cuda.shares", "2")
    alloc.restore("k1", {"cuda.shares": ["1"]}, {"cuda.shares": D("0.4")})
    assert alloc.free() == {"cuda.shares": D("1.6")}
    assert alloc.allocate("k2", {"cuda.shares": D("0.6")}).devices == {"cuda.shares": ["1"]}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5), st.integers(0, 4)), max_size=30))
def test_whole_devices_are_never_shared(steps: list[tuple[bool, int, int]]) -> None:
    alloc = allocator()
    for release, kernel, amount in steps:
        if release:
            alloc.release(f"k{kernel}")
            continue
        try:
            alloc.allocate(f"k{kernel}", {"cuda.device": D(amount)})
        except DeviceAllocationError:
            pass
        held = [d for k in range(6) if (a := alloc.allocation(f"k{k}")) for d in a.devices.get("cuda.device", [])]
        assert len(held) == len(set(held)) and alloc.free()["cuda.device"] == 4 - len(held)
