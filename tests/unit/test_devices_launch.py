"""Devices in kernel launches: ``launch_for`` and the lifecycle that allocates and releases them."""

from __future__ import annotations

from decimal import Decimal

from contracts.agent import KernelAssigned, KernelTerminationRequested
from contracts.reports import KernelExitedReport, KernelRunningReport
from contracts.status import Reason
from domain.emitting import Emitter
from services.agent.accelerators.mock import MockPlugin
from services.agent.backends.base import KernelLaunch
from services.agent.devices import DeviceAllocator
from services.agent.kernels import KernelLifecycle, launch_for
from services.agent.backends.simulated import SimulatedBackend
from services.application.context import make_context
from tests.support.reports import RecordingReporter

D = Decimal
emit = Emitter("local", 1, make_context("test"))


def assigned(kernel_id: str, gpus: int) -> KernelAssigned:
    return emit(KernelAssigned, kernel_id=kernel_id, session_id=f"s-{kernel_id}", image="img",
                slots={"cpu": D(1), "mem": D(1024), "cuda.device": D(gpus)})


async def mock_allocator(devices: int = 4) -> DeviceAllocator:
    return await DeviceAllocator.from_plugins([MockPlugin("cuda.device", D(devices))])


class CapturingBackend(SimulatedBackend):
    def __init__(self) -> None:
        super().__init__(delay=0)
        self.launches: list[KernelLaunch] = []

    async def create(self, launch: KernelLaunch) -> str:
        self.launches.append(launch)
        return await super().create(launch)


async def test_launch_carries_devices_and_their_env() -> None:
    launch = launch_for(assigned("k1", 2), await mock_allocator())
    assert launch.devices == {"cuda.device": ["0", "1"]}
    assert launch.env == {"CUDA_VISIBLE_DEVICES": "0,1", "BERTH_CUDA_DEVICES": "0,1", "BERTH_SESSION_ID": "s-k1",
                          "BERTH_KERNEL_ID": "k1", "BERTH_CLUSTER_ROLE": "main"}


def test_launch_without_allocator_has_no_devices() -> None:
    launch = launch_for(assigned("k1", 2))
    assert launch.devices == {} and "CUDA_VISIBLE_DEVICES" not in launch.env


async def test_lifecycle_releases_devices_on_stop_and_on_exit() -> None:
    alloc, backend, reporter = await mock_allocator(), CapturingBackend(), RecordingReporter()
    lifecycle = KernelLifecycle(backend, reporter, allocator=alloc)  # type: ignore[arg-type]
    await lifecycle.start(assigned("k1", 2))
    await lifecycle.start(assigned("k2", 2))
    assert alloc.free() == {"cuda.device": D(0)}
    assert {d for launch in backend.launches for d in launch.devices["cuda.device"]} == {"0", "1", "2", "3"}

    await lifecycle.stop(emit(KernelTerminationRequested, kernel_id="k1", session_id="s-k1",
                              reason=Reason.USER_REQUESTED))
    assert alloc.free() == {"cuda.device": D(2)}
    await lifecycle.exited("k2", 0, Reason.TASK_FINISHED.value)
    assert alloc.free() == {"cuda.device": D(4)}


async def test_not_enough_devices_reports_failed_to_start_and_holds_nothing() -> None:
    alloc, backend, reporter = await mock_allocator(2), CapturingBackend(), RecordingReporter()
    lifecycle = KernelLifecycle(backend, reporter, allocator=alloc)  # type: ignore[arg-type]
    await lifecycle.start(assigned("k1", 3))
    assert backend.launches == [] and alloc.free() == {"cuda.device": D(2)}
    exited = reporter.reports[-1]
    assert isinstance(exited, KernelExitedReport) and exited.reason == Reason.FAILED_TO_START.value
    await lifecycle.start(assigned("k2", 2))
    assert isinstance(reporter.reports[-1], KernelRunningReport)
