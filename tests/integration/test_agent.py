"""The agent with its simulated backend on a real NATS: events in, reports and heartbeats out."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiodocker
import msgspec
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts import commands as c
from contracts.agent import KernelAssigned
from contracts.envelope import Event
from contracts.reports import (
    AgentHeartbeat,
    AgentStarted,
    AnyReport,
    KernelCreatingReport,
    KernelExitedReport,
    KernelPullingReport,
    KernelRunningReport,
    decode_report,
)
from contracts.status import Reason
from contracts.subjects import EVENTS_STREAM, HEARTBEAT_BUCKET, REPORTS_STREAM
from domain import agent as agent_domain
from domain.agent import AgentState
from services.agent.backends.base import KernelLaunch, KernelStartError
from services.agent.main import durable_name, run_agent
from services.agent.backends.simulated import SimulatedBackend
from services.application.context import make_context
from services.common.settings import Settings
from tests.support.publish import ServiceTasks, publish_events, service_tasks
from tests.support.waiting import async_wait_for

AGENT = "local"


@pytest.fixture
def settings(nats_url: str) -> Settings:
    return Settings(nats_url=nats_url, agent_id=AGENT, sim_delay=0.01, heartbeat_interval=0.1, heartbeat_timeout=0.5)


@pytest.fixture
async def services(js: JetStreamContext) -> AsyncIterator[ServiceTasks]:
    async with service_tasks() as tasks:
        yield tasks


class AgentHistory:
    """Decides agent commands in memory and publishes the events as the relay would."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.state: AgentState | None = None
        self.positions = itertools.count(1)

    async def do(self, command: c.Command) -> list[Event]:
        events = agent_domain.decide(self.state, command, make_context("test"), AGENT)
        for event in events:
            self.state = agent_domain.evolve(self.state, event)
            await publish_events(self.js, [event], next(self.positions))
        return events

    async def assign(self, kernel_id: str) -> KernelAssigned:
        (event,) = await self.do(c.AssignKernel(kernel_id=kernel_id, session_id=f"s-{kernel_id}", image="img",
                                                slots={"cpu": Decimal(1), "mem": Decimal(1024)}))
        assert isinstance(event, KernelAssigned)
        return event

    async def terminate(self, kernel_id: str) -> None:
        await self.do(c.RequestKernelTermination(kernel_id=kernel_id, reason=Reason.USER_REQUESTED))


@pytest.fixture
async def history(js: JetStreamContext) -> AgentHistory:
    history = AgentHistory(js)
    await history.do(c.RegisterAgent(capacity={"cpu": Decimal(4), "mem": Decimal(8 * 1024**3)}, backend="simulated",
                                     hostname="h"))
    return history


class Reports:
    """Reads the agent's reports off the REPORTS work queue, in order."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.sub = None

    async def take(self, count: int, timeout: float = 10.0) -> list[AnyReport]:
        if self.sub is None:
            self.sub = await self.js.pull_subscribe(f"rp.agent.{AGENT}.>", stream=REPORTS_STREAM)
        got: list[AnyReport] = []

        async def more() -> bool:
            try:
                for msg in await self.sub.fetch(count - len(got), timeout=0.2):
                    got.append(decode_report(msg.data))
                    await msg.ack()
            except TimeoutError:
                pass
            return len(got) >= count

        await async_wait_for(more, timeout=timeout, message=f"expected {count} reports, got {got}")
        return got


async def stored_reports(js: JetStreamContext) -> int:
    """Returns how many reports the REPORTS stream ever stored (duplicates are not stored)."""
    return (await js.stream_info(REPORTS_STREAM)).state.last_seq


async def consumed_everything(js: JetStreamContext) -> bool:
    """Returns True once the agent's durable consumer has acknowledged every event."""
    try:
        info = await js.consumer_info(EVENTS_STREAM, durable_name(AGENT))
    except NotFoundError:
        return False  # the agent has not created it yet
    last = (await js.stream_info(EVENTS_STREAM)).state.last_seq
    return info.num_pending == 0 and info.num_ack_pending == 0 and info.ack_floor.stream_seq == last


def kinds(reports: list[AnyReport]) -> list[type]:
    return [type(r) for r in reports]


def of_kernel(reports: list[AnyReport], kernel_id: str) -> list[AnyReport]:
    return [r for r in reports if getattr(r, "kernel_id", None) == kernel_id]


async def test_announces_itself_and_beats(js: JetStreamContext, services: ServiceTasks, settings: Settings) -> None:
    services.start("agent", lambda stop: run_agent(settings, stop))
    (started,) = await Reports(js).take(1)
    assert isinstance(started, AgentStarted)
    assert (started.agent_id, started.backend) == (AGENT, "simulated")
    assert started.capacity == {"cpu": Decimal(4), "mem": Decimal(8 * 1024**3)}

    kv = await js.key_value(HEARTBEAT_BUCKET)
    first = await async_wait_for(lambda: _entry(kv), timeout=5)
    later = await async_wait_for(lambda: _entry(kv, newer_than=first.revision), timeout=5)
    beat = msgspec.json.decode(later.value, type=AgentHeartbeat)
    assert beat.agent_id == AGENT and beat.sent_at > msgspec.json.decode(first.value, type=AgentHeartbeat).sent_at


async def _entry(kv, newer_than: int = 0):  # type: ignore[no-untyped-def]
    try:
        entry = await kv.get(AGENT)
    except Exception:  # noqa: BLE001 - no heartbeat yet
        return None
    return entry if entry.revision > newer_than else None


async def test_runs_an_assigned_kernel_and_terminates_it(
    js: JetStreamContext, services: ServiceTasks, settings: Settings, history: AgentHistory
) -> None:
    reports = Reports(js)
    services.start("agent", lambda stop: run_agent(settings, stop))
    await history.assign("k1")

    got = await reports.take(4)
    assert kinds(got) == [AgentStarted, KernelPullingReport, KernelCreatingReport, KernelRunningReport]
    running = got[-1]
    assert isinstance(running, KernelRunningReport)
    assert (running.kernel_id, running.session_id, running.container_id) == ("k1", "s-k1", "sim-k1")

    await history.terminate("k1")
    (exited,) = await reports.take(1)
    assert isinstance(exited, KernelExitedReport)
    assert (exited.kernel_id, exited.exit_code, exited.reason) == ("k1", 0, "user-requested")


async def test_terminating_a_kernel_unknown_to_the_backend_reports_no_exit_code(
    js: JetStreamContext, services: ServiceTasks, settings: Settings, history: AgentHistory
) -> None:
    reports = Reports(js)
    services.start("agent", lambda stop: run_agent(settings, stop))
    await history.assign("k1")
    await reports.take(4)
    await services.stop("agent")
    services.start("agent", lambda stop: run_agent(settings, stop))  # a new backend: k1 is gone
    await history.terminate("k1")

    started, exited = await reports.take(2)
    assert isinstance(started, AgentStarted) and isinstance(exited, KernelExitedReport)
    assert (exited.kernel_id, exited.exit_code, exited.reason) == ("k1", None, "user-requested")


class BrokenImageBackend(SimulatedBackend):
    """Cannot start anything, as with an image that does not exist."""

    async def create(self, launch: KernelLaunch) -> str:
        raise KernelStartError(f"image {launch.kernel.image!r} not found")


async def test_a_kernel_that_cannot_start_is_reported_as_failed_to_start(
    js: JetStreamContext, services: ServiceTasks, settings: Settings, history: AgentHistory
) -> None:
    services.start("agent", lambda stop: run_agent(settings, stop, backend=BrokenImageBackend(delay=0.01)))
    event = await history.assign("k1")
    got = await Reports(js).take(4)
    assert kinds(got) == [AgentStarted, KernelPullingReport, KernelCreatingReport, KernelExitedReport]
    assert (got[-1].exit_code, got[-1].reason) == (None, "failed-to-start")
    await publish_events(js, [event], 99, msg_id="redelivery")  # delivered again: nothing more happens
    await async_wait_for(lambda: consumed_everything(js), timeout=10)
    assert await stored_reports(js) == 4


async def test_a_redelivered_assignment_never_duplicates_a_report(
    js: JetStreamContext, services: ServiceTasks, settings: Settings, history: AgentHistory
) -> None:
    services.start("agent", lambda stop: run_agent(settings, stop))
    event = await history.assign("k1")
    await async_wait_for(lambda: consumed_everything(js), timeout=10)
    assert await stored_reports(js) == 4  # started, pulling, creating, running

    await publish_events(js, [event], 99, msg_id="redelivery")  # the same assignment again
    await async_wait_for(lambda: consumed_everything(js), timeout=10)
    assert await stored_reports(js) == 4


class FlakyBackend(SimulatedBackend):
    """Fails its first ``create`` as a container engine might."""

    def __init__(self) -> None:
        super().__init__(delay=0.01)
        self.failures = 1

    async def create(self, launch: KernelLaunch) -> str:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("engine busy")
        return await super().create(launch)


async def test_a_failed_start_is_retried_without_duplicate_reports(
    js: JetStreamContext, services: ServiceTasks, settings: Settings, history: AgentHistory
) -> None:
    backend = FlakyBackend()
    services.start("agent", lambda stop: run_agent(settings, stop, backend=backend))
    await history.assign("k1")
    got = await Reports(js).take(4)
    assert kinds(got) == [AgentStarted, KernelPullingReport, KernelCreatingReport, KernelRunningReport]
    await async_wait_for(lambda: consumed_everything(js), timeout=10)
    assert backend.failures == 0
    assert await stored_reports(js) == 4


async def test_a_restarted_agent_resumes_where_it_stopped(
    js: JetStreamContext, services: ServiceTasks, settings: Settings, history: AgentHistory
) -> None:
    backend = SimulatedBackend(delay=0.01)  # the "containers" outlive the agent process
    reports = Reports(js)
    services.start("agent", lambda stop: run_agent(settings, stop, backend=backend))
    await history.assign("k1")
    assert kinds(await reports.take(4))[-1] is KernelRunningReport
    await async_wait_for(lambda: consumed_everything(js), timeout=10)
    await services.stop("agent")

    await history.assign("k2")  # while the agent is down
    await history.terminate("k1")
    services.start("agent", lambda stop: run_agent(settings, stop, backend=backend))

    got = await reports.take(5)
    assert isinstance(got[0], AgentStarted)
    assert kinds(of_kernel(got, "k2")) == [KernelPullingReport, KernelCreatingReport, KernelRunningReport]
    (k1_exit,) = of_kernel(got, "k1")  # k1 and k2 are carried out concurrently: only each one's order holds
    assert isinstance(k1_exit, KernelExitedReport) and k1_exit.exit_code == 0
    await async_wait_for(lambda: consumed_everything(js), timeout=10)
    assert await stored_reports(js) == 9, "k1's reports were not sent again"
    assert await backend.list_running() == {"k2": "sim-k2"}


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


async def test_a_bad_capacity_is_refused_before_anything_starts(settings: Settings) -> None:
    bad = msgspec.structs.replace(settings, agent_capacity="cpu=4,gpu=1", nats_url="nats://127.0.0.1:1")
    with pytest.raises(ValueError, match="unknown resource slot 'gpu'"):
        await run_agent(bad, asyncio.Event())
