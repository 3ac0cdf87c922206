"""What the agent's tests share (``tests/integration/test_agent*.py``): the agent's settings and a place for its
tasks (``settings``, ``services``), its history decided in memory and published as the relay would (``history``),
and its reports read off the REPORTS work queue."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts import commands as c
from contracts.agent import KernelAssigned
from contracts.envelope import Event
from contracts.reports import AnyReport, decode_report
from contracts.status import Reason
from contracts.subjects import EVENTS_STREAM, REPORTS_STREAM
from domain import agent as agent_domain
from domain.agent import AgentState
from services.agent.main import durable_name
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
