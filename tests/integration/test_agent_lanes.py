"""The agent's lanes, with its simulated backend on a real NATS: kernels assigned together start together,
one kernel's events are carried out in order, and an outage or a slow start in one kernel's lane holds back
no other."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiodocker
from nats.js import JetStreamContext

from contracts.reports import (
    KernelCreatingReport,
    KernelExitedReport,
    KernelPullingReport,
    KernelRunningReport,
)
from services.agent.backends.base import KernelLaunch
from services.agent.main import run_agent
from services.agent.backends.simulated import SimulatedBackend
from services.common.settings import Settings
from tests.support.agent_reports import (
    AgentHistory, Reports, consumed_everything, kinds, of_kernel, stored_reports,
)
from tests.support.agent_reports import history, services, settings  # noqa: F401 - the fixtures
from tests.support.publish import ServiceTasks
from tests.support.waiting import async_wait_for


class GatedBackend(SimulatedBackend):
    """Creates a kernel only once ``together`` creations are under way at the same time (or after
    ``patience`` seconds, so that a serial agent is shown, not hung); records the most at once."""

    def __init__(self, together: int, patience: float = 5.0) -> None:
        super().__init__(delay=0.01)
        self.together, self.patience = together, patience
        self.in_flight = self.most_at_once = 0
        self._all_there = asyncio.Event()

    async def create(self, launch: KernelLaunch) -> str:
        self.in_flight += 1
        self.most_at_once = max(self.most_at_once, self.in_flight)
        if self.in_flight >= self.together:
            self._all_there.set()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_there.wait(), self.patience)
            return await super().create(launch)
        finally:
            self.in_flight -= 1


async def test_kernels_assigned_together_start_at_the_same_time(
    js: JetStreamContext, services: ServiceTasks, settings: Settings, history: AgentHistory
) -> None:
    for kernel_id in ("k1", "k2", "k3"):  # assigned before the agent starts: it fetches them together
        await history.assign(kernel_id)
    backend = GatedBackend(together=3)
    services.start("agent", lambda stop: run_agent(settings, stop, backend=backend))

    got = await Reports(js).take(10)
    for kernel_id in ("k1", "k2", "k3"):
        assert kinds(of_kernel(got, kernel_id)) == [KernelPullingReport, KernelCreatingReport, KernelRunningReport]
    assert backend.most_at_once == 3, "the kernels were created one after the other"


async def test_the_events_of_one_kernel_are_carried_out_in_order_when_fetched_together(
    js: JetStreamContext, services: ServiceTasks, settings: Settings, history: AgentHistory
) -> None:
    backend = SimulatedBackend(delay=0.01)
    await history.assign("k1")
    await history.assign("k2")
    await history.terminate("k1")  # in the same fetch as its assignment: after it, never before
    services.start("agent", lambda stop: run_agent(settings, stop, backend=backend))

    got = await Reports(js).take(8)
    assert kinds(of_kernel(got, "k1")) == [KernelPullingReport, KernelCreatingReport, KernelRunningReport,
                                           KernelExitedReport]
    assert kinds(of_kernel(got, "k2")) == [KernelPullingReport, KernelCreatingReport, KernelRunningReport]
    await async_wait_for(lambda: consumed_everything(js), timeout=10)
    assert await backend.list_running() == {"k2": "sim-k2"}


class DockerAwayOnceBackend(SimulatedBackend):
    """Creates ``kernel_id`` through a Docker engine that does not answer the first time (the real
    aiodocker client on a socket nobody listens on), then as the simulated backend does."""

    def __init__(self, kernel_id: str, socket: Path) -> None:
        super().__init__(delay=0.01)
        self.kernel_id, self.url, self.outages = kernel_id, f"unix://{socket}", 1

    async def create(self, launch: KernelLaunch) -> str:
        if launch.kernel.kernel_id == self.kernel_id and self.outages:
            self.outages -= 1
            docker = aiodocker.Docker(url=self.url)
            try:
                await docker.containers.list()
            finally:
                await docker.close()
        return await super().create(launch)


async def test_an_outage_in_one_kernels_lane_is_waited_out_without_holding_back_the_others(
    js: JetStreamContext, services: ServiceTasks, settings: Settings, history: AgentHistory, tmp_path: Path
) -> None:
    await history.assign("k1")
    await history.assign("k2")
    backend = DockerAwayOnceBackend("k1", tmp_path / "no-docker.sock")
    services.start("agent", lambda stop: run_agent(settings, stop, backend=backend))

    got = await Reports(js).take(7)
    assert kinds(of_kernel(got, "k2")) == [KernelPullingReport, KernelCreatingReport, KernelRunningReport]
    assert kinds(of_kernel(got, "k1"))[-1] is KernelRunningReport  # retried in place: not failed, not dropped
    assert backend.outages == 0
    await async_wait_for(lambda: consumed_everything(js), timeout=10)
    assert await backend.list_running() == {"k1": "sim-k1", "k2": "sim-k2"}
    assert await stored_reports(js) == 7, "a report was stored twice"


class HeldBackend(SimulatedBackend):
    """Holds the creation of ``kernel_id`` until ``release`` is set: an image pull that takes long."""

    def __init__(self, kernel_id: str) -> None:
        super().__init__(delay=0.01)
        self.kernel_id, self.holding, self.release = kernel_id, asyncio.Event(), asyncio.Event()

    async def create(self, launch: KernelLaunch) -> str:
        if launch.kernel.kernel_id == self.kernel_id:
            self.holding.set()
            await self.release.wait()
        return await super().create(launch)


async def test_a_slow_start_holds_back_no_later_assignment(
    js: JetStreamContext, services: ServiceTasks, settings: Settings, history: AgentHistory
) -> None:
    backend = HeldBackend("k1")
    reports = Reports(js)
    services.start("agent", lambda stop: run_agent(settings, stop, backend=backend))
    try:
        await history.assign("k1")
        await async_wait_for(backend.holding.is_set, timeout=10, message="k1's creation never began")
        await history.assign("k2")  # fetched while k1 is still being created

        got = await reports.take(6)  # AgentStarted; k1 pulling, creating; k2 pulling, creating, running
        assert kinds(of_kernel(got, "k2")) == [KernelPullingReport, KernelCreatingReport, KernelRunningReport]
        assert kinds(of_kernel(got, "k1")) == [KernelPullingReport, KernelCreatingReport]
    finally:
        backend.release.set()
    (k1_running,) = await reports.take(1)
    assert isinstance(k1_running, KernelRunningReport) and k1_running.kernel_id == "k1"
    await async_wait_for(lambda: consumed_everything(js), timeout=10)
    assert await backend.list_running() == {"k1": "sim-k1", "k2": "sim-k2"}
