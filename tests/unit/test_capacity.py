"""Capacity detection: /proc/meminfo, cgroup limits, reservations and accelerator slots."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from services.agent.capacity import (
    CapacityError,
    cgroup_cpu_limit,
    cgroup_mem_limit,
    detect_capacity,
    mem_total,
    resolve_capacity,
)

GIB = 1024**3
MEMINFO = "MemTotal:        8388608 kB\nMemFree:         1234 kB\nMemAvailable:    4096 kB\n"


def test_reads_mem_total_in_bytes() -> None:
    assert mem_total(MEMINFO) == 8 * GIB


@pytest.mark.parametrize(("text", "message"), [("MemFree: 1 kB\n", "no MemTotal"), ("MemTotal: lots kB\n", "cannot read")])
def test_refuses_unreadable_meminfo(text: str, message: str) -> None:
    with pytest.raises(CapacityError, match=message):
        mem_total(text)


def test_subtracts_reservations() -> None:
    assert detect_capacity(8, 8 * GIB, "1.5", "256m") == {"cpu": Decimal("6.5"), "mem": Decimal(8 * GIB - 256 * 1024**2)}
    assert detect_capacity(2, GIB) == {"cpu": Decimal(2), "mem": Decimal(GIB)}


@pytest.mark.parametrize(
    ("cpu", "mem", "message"),
    [
        ("2", "0", "RESERVED_CPU='2' leaves no CPU of the 2"),
        ("0", "1g", "RESERVED_MEM='1g' leaves no memory"),
        ("-1", "0", "cannot parse amount"),
        ("1g", "0", "takes no unit"),
        ("0", "lots", "cannot parse amount"),
    ],
)
def test_refuses_reservations_that_are_bad_or_leave_nothing(cpu: str, mem: str, message: str) -> None:
    with pytest.raises(CapacityError, match=message):
        detect_capacity(2, GIB, cpu, mem)


def test_auto_detects_with_injected_machine(tmp_path: Path) -> None:
    slots = resolve_capacity("auto", {"cuda.device": Decimal(4)}, reserved_cpu="1", reserved_mem="1g",
                             cpus=4, meminfo=MEMINFO, cgroup_root=tmp_path)
    assert slots == {"cpu": Decimal(3), "cuda.device": Decimal(4), "mem": Decimal(7 * GIB)}
    assert resolve_capacity(" AUTO ", cpus=2, meminfo=MEMINFO, cgroup_root=tmp_path)["cpu"] == 2


def test_auto_detects_this_machine() -> None:
    slots = resolve_capacity("auto")
    assert slots["cpu"] > 0 and slots["mem"] > 0 and set(slots) == {"cpu", "mem"}


def test_cgroup_v2_limits_cap_detection(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    (tmp_path / "memory.max").write_text(f"{2 * GIB}\n")
    assert cgroup_cpu_limit(tmp_path) == Decimal("1.5")
    assert resolve_capacity("auto", cpus=4, meminfo=MEMINFO, cgroup_root=tmp_path) == {
        "cpu": Decimal("1.5"), "mem": Decimal(2 * GIB)}
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "memory.max").write_text("max\n")
    assert (cgroup_cpu_limit(tmp_path), cgroup_mem_limit(tmp_path)) == (None, None)


def test_cgroup_v1_limits_cap_detection(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "memory").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert (cgroup_cpu_limit(tmp_path), cgroup_mem_limit(tmp_path)) == (None, None)
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text(f"{GIB}\n")
    assert resolve_capacity("auto", cpus=4, meminfo=MEMINFO, cgroup_root=tmp_path) == {
        "cpu": Decimal(2), "mem": Decimal(GIB)}


def test_an_explicit_capacity_overrides_detection_and_wins_per_slot() -> None:
    accelerators = {"cuda.device": Decimal(4)}
    assert resolve_capacity("cpu=4,mem=8g", accelerators, reserved_cpu="3") == {
        "cpu": Decimal(4), "cuda.device": Decimal(4), "mem": Decimal(8 * GIB)}
    assert resolve_capacity("cpu=4,mem=8g,cuda.device=1", accelerators)["cuda.device"] == 1


def test_auto_with_an_exhausting_reservation_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(CapacityError, match="leaves no CPU"):
        resolve_capacity("auto", reserved_cpu="4", cpus=4, meminfo=MEMINFO, cgroup_root=tmp_path)


def test_settings_read_auto_and_reservations_from_the_environment() -> None:
    from services.common.settings import Settings

    settings = Settings.from_env({"BERTH_AGENT_CAPACITY": "auto", "BERTH_AGENT_RESERVED_CPU": "0.5",
                                  "BERTH_AGENT_RESERVED_MEM": "256m", "BERTH_AGENT_ACCELERATORS": "mock:cuda.device=2"})
    assert (settings.agent_capacity, settings.agent_reserved_cpu, settings.agent_reserved_mem,
            settings.agent_accelerators) == ("auto", "0.5", "256m", "mock:cuda.device=2")
    assert Settings().agent_capacity == "cpu=4,mem=8g" and Settings().agent_accelerators == ""
