"""Accelerator slots end to end on real NATS and PostgreSQL: a simulated agent with four mock
CUDA devices gives a session two distinct devices, and a session asking for more than any agent
has stays pending."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from nats.js import JetStreamContext

from contracts import commands as c
from contracts.session import KernelSpec, SessionSpec
from contracts.slots import parse_slots
from contracts.status import SessionStatus
from services.agent.backends.base import KernelLaunch
from services.agent.main import run_agent
from services.agent.backends.simulated import SimulatedBackend
from services.application.agents import Agents
from services.application.context import make_context
from services.application.sessions import Sessions
from services.common.settings import Settings
from services.controller.main import run_controller
from services.relay.main import run_relay
from services.scheduler.main import run_scheduler
from tests.support.publish import ServiceTasks, service_tasks
from tests.support.waiting import async_wait_for

AGENT = "gpu1"
GIB = Decimal(1024**3)


class CapturingBackend(SimulatedBackend):
    """A simulated backend that keeps every launch it is given."""

    def __init__(self) -> None:
        super().__init__(delay=0.01)
        self.launches: dict[str, KernelLaunch] = {}

    async def create(self, launch: KernelLaunch) -> str:
        self.launches[launch.kernel.kernel_id] = launch
        return await super().create(launch)


@pytest.fixture
def settings(nats_url: str, pg_dsn: str) -> Settings:
    return Settings(nats_url=nats_url, pg_dsn=pg_dsn, agent_id=AGENT, agent_capacity="cpu=4,mem=8g",
                    agent_accelerators="mock:cuda.device=4", sim_delay=0.01,
                    heartbeat_interval=0.1, heartbeat_timeout=60.0)  # never lost: a loss would end the sessions


@pytest.fixture
def backend() -> CapturingBackend:
    return CapturingBackend()


@pytest.fixture
async def cluster(js: JetStreamContext, settings: Settings, apps: tuple[Sessions, Agents],
                  backend: CapturingBackend) -> AsyncIterator[ServiceTasks]:
    async with service_tasks() as tasks:
        tasks.start("relay", lambda stop: run_relay(settings, stop))
        tasks.start("scheduler", lambda stop: run_scheduler(settings, stop))
        tasks.start("controller", lambda stop: run_controller(settings, stop))
        tasks.start("agent", lambda stop: run_agent(settings, stop, backend=backend))
        yield tasks


async def request(sessions: Sessions, **extra: str) -> tuple[str, str]:
    session_id = uuid.uuid4().hex[:12]
    kernel_id = f"{session_id}-k"
    slots = parse_slots({"cpu": "1", "mem": "1g", **extra})  # what the gateway does with its input
    command = c.RequestSession(owner="alice", spec=SessionSpec(
        name="s", image="python:3.11", kernels=[KernelSpec(kernel_id=kernel_id, slots=slots)],
    ))
    await asyncio.to_thread(sessions.request, session_id, command, make_context("test"))
    return session_id, kernel_id


async def status_of(sessions: Sessions, session_id: str) -> SessionStatus | None:
    state = await asyncio.to_thread(sessions.get, session_id)
    return None if state is None else state.status


async def wait_status(sessions: Sessions, session_id: str, status: SessionStatus) -> None:
    async def reached() -> bool:
        return await status_of(sessions, session_id) is status

    await async_wait_for(reached, timeout=15, message=f"session {session_id} did not become {status.value}")


async def judged_too_large(sessions: Sessions, session_id: str) -> bool:
    """Returns True once the scheduler's last pending reason for the session is ``too-large``."""
    events = await asyncio.to_thread(sessions.load, session_id)
    codes = [getattr(e, "code") for e in events if type(e).type_name() == "session.pending_reason_changed"]
    return bool(codes) and codes[-1] == "too-large"


async def test_the_agent_announces_its_mock_devices(cluster: ServiceTasks, apps: tuple[Sessions, Agents]) -> None:
    _, agents = apps

    async def registered() -> bool:
        state = await asyncio.to_thread(agents.get, AGENT)
        return state is not None and state.capacity.get("cuda.device") == 4

    await async_wait_for(registered, timeout=15, message="the agent did not register 4 cuda.device")
    cluster.check()


async def test_two_devices_reach_the_launch_and_too_many_stay_pending(
    cluster: ServiceTasks, apps: tuple[Sessions, Agents], backend: CapturingBackend
) -> None:
    sessions, _ = apps
    greedy_id, greedy_kernel = await request(sessions, **{"cuda.device": "5"})
    session_id, kernel_id = await request(sessions, **{"cuda.device": "2"})
    other_id, other_kernel = await request(sessions, **{"cuda.device": "2"})

    await wait_status(sessions, session_id, SessionStatus.RUNNING)
    await wait_status(sessions, other_id, SessionStatus.RUNNING)
    launch = backend.launches[kernel_id]
    ids = launch.env["CUDA_VISIBLE_DEVICES"].split(",")
    assert len(ids) == len(set(ids)) == 2 and launch.env["BERTH_CUDA_DEVICES"] == ",".join(ids)
    assert launch.devices == {"cuda.device": ids}
    other = backend.launches[other_kernel].devices["cuda.device"]
    assert not set(ids) & set(other), "two running kernels share a device"

    # The others ran after it was requested; a pass judged it too large and left it pending.
    await async_wait_for(lambda: judged_too_large(sessions, greedy_id), timeout=15,
                         message="the greedy session got no too-large reason")
    assert await status_of(sessions, greedy_id) is SessionStatus.PENDING
    assert greedy_kernel not in backend.launches

    await asyncio.to_thread(sessions.terminate, session_id, make_context("test"))
    await wait_status(sessions, session_id, SessionStatus.TERMINATED)
    third_id, third_kernel = await request(sessions, **{"cuda.device": "2"})
    await wait_status(sessions, third_id, SessionStatus.RUNNING)
    assert set(backend.launches[third_kernel].devices["cuda.device"]) == set(ids), "released devices were not reused"
    assert await status_of(sessions, greedy_id) is SessionStatus.PENDING
    cluster.check()
