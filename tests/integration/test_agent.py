"""The agent with its simulated backend on a real NATS: events in, reports and heartbeats out. How its
kernels' events are carried out together and apart (lanes): ``test_agent_lanes.py``."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import msgspec
import pytest
from nats.js import JetStreamContext

from contracts.reports import (
    AgentHeartbeat,
    AgentStarted,
    KernelCreatingReport,
    KernelExitedReport,
    KernelPullingReport,
    KernelRunningReport,
)
from contracts.subjects import HEARTBEAT_BUCKET
from services.agent.backends.base import KernelLaunch, KernelStartError
from services.agent.main import run_agent
from services.agent.backends.simulated import SimulatedBackend
from services.common.settings import Settings
from tests.support.agent_reports import (
    AGENT, AgentHistory, Reports, consumed_everything, kinds, of_kernel, stored_reports,
)
from tests.support.agent_reports import history, services, settings  # noqa: F401 - the fixtures
from tests.support.publish import ServiceTasks, publish_events
from tests.support.waiting import async_wait_for


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


async def test_a_bad_capacity_is_refused_before_anything_starts(settings: Settings) -> None:
    bad = msgspec.structs.replace(settings, agent_capacity="cpu=4,gpu=1", nats_url="nats://127.0.0.1:1")
    with pytest.raises(ValueError, match="unknown resource slot 'gpu'"):
        await run_agent(bad, asyncio.Event())
