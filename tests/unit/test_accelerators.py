"""Accelerator plugins: the setting's specs, the mock devices and the nvidia-smi parser."""

from __future__ import annotations

import sys
from decimal import Decimal

import pytest

from services.agent.accelerators import AcceleratorError, build_plugins
from services.agent.accelerators.cuda import CudaPlugin, parse_nvidia_smi
from services.agent.accelerators.mock import MockPlugin

NVIDIA_SMI = """\
0, GPU-5d1c0a36-7e1b-2f44-9c1e-0123456789ab, 81559 MiB
1, GPU-9a8b7c6d-5e4f-3a2b-1c0d-fedcba987654, 81559 MiB
"""


def test_empty_setting_means_no_plugins() -> None:
    assert build_plugins("") == [] and build_plugins(" , ") == []


async def test_mock_offers_whole_devices() -> None:
    (plugin,) = build_plugins("mock:cuda.device=4")
    assert isinstance(plugin, MockPlugin) and (plugin.key, plugin.slot, plugin.fractional) == ("cuda", "cuda.device", False)
    devices = await plugin.list_devices()
    assert [d.device_id for d in devices] == ["0", "1", "2", "3"]
    assert len({d.uuid for d in devices}) == 4
    assert await plugin.available_slots() == {"cuda.device": Decimal(4)}
    assert plugin.generate_env(["0", "2"]) == {"CUDA_VISIBLE_DEVICES": "0,2"}


async def test_mock_offers_fractional_shares() -> None:
    (plugin,) = build_plugins(" mock: cuda.shares = 2.5 ; memory=8g ")
    devices = await plugin.list_devices()
    assert [(d.device_id, d.shares, d.memory) for d in devices] == [
        ("0", Decimal(1), 8 * 1024**3), ("1", Decimal(1), 8 * 1024**3), ("2", Decimal("0.5"), 8 * 1024**3)]
    assert await plugin.available_slots() == {"cuda.shares": Decimal("2.5")}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gpu:cuda.device=1", "unknown accelerator plugin 'gpu'"),
        ("mock", "needs a slot"),
        ("mock:cuda.device", "expected name=value"),
        ("mock:cuda.device=1.5", "whole devices"),
        ("mock:cuda.device=0", "must be positive"),
        ("mock:cpu=2", "not an accelerator slot"),
        ("mock:rocm.device=2", "unknown resource slot 'rocm.device'"),
        ("mock:cuda.device=2;cuda.shares=1", "give one slot"),
        ("mock:cuda.device=2,mock:cuda.shares=1", "two plugins offer 'cuda'"),
        ("cuda:fast", "takes no options"),
    ],
)
def test_refuses_bad_specs_clearly(text: str, message: str) -> None:
    with pytest.raises(AcceleratorError, match=message):
        build_plugins(text)


def test_parses_nvidia_smi_output() -> None:
    devices = parse_nvidia_smi(NVIDIA_SMI)
    assert [(d.device_id, d.memory) for d in devices] == [("0", 81559 * 1024**2), ("1", 81559 * 1024**2)]
    assert devices[0].uuid == "GPU-5d1c0a36-7e1b-2f44-9c1e-0123456789ab"
    (named,) = parse_nvidia_smi("0, GPU-x, 143771, NVIDIA H200\n")
    assert (named.memory, named.model) == (143771 * 1024**2, "NVIDIA H200")
    assert parse_nvidia_smi("") == []


@pytest.mark.parametrize("text", ["0, GPU-x\n", "zero, GPU-x, 1 MiB\n", "0, GPU-x, lots\n"])
def test_refuses_unreadable_nvidia_smi_output(text: str) -> None:
    with pytest.raises(AcceleratorError, match="nvidia-smi line 1"):
        parse_nvidia_smi(text)


async def test_cuda_reads_the_command_output() -> None:
    plugin = CudaPlugin(command=(sys.executable, "-c", f"print({NVIDIA_SMI!r}, end='')"))
    assert [d.device_id for d in await plugin.list_devices()] == ["0", "1"]
    assert await plugin.available_slots() == {"cuda.device": Decimal(2)}


@pytest.mark.parametrize("command", [("berth-no-such-nvidia-smi",), (sys.executable, "-c", "raise SystemExit(9)")])
async def test_cuda_without_working_nvidia_smi_offers_nothing(command: tuple[str, ...]) -> None:
    plugin = CudaPlugin(command=command)
    assert await plugin.list_devices() == [] and await plugin.available_slots() == {}


async def test_this_machine_without_nvidia_smi_offers_no_gpus() -> None:
    import shutil

    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi")
    (plugin,) = build_plugins("cuda")
    assert await plugin.available_slots() == {}
