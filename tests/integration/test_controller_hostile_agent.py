"""An agent's own credential in a hostile hand, against the controller on real NATS and PostgreSQL with the relay and
the projector: what it may publish on its own report subjects (all its identity may write there) about its own
kernels. Values no read model can store (an exit code over 32 bits, a NUL in a container id, a host name or the
report's message id) had the projector dead-letter the events that carried them (the kernel stayed RUNNING in the read
models, the agent had no row); a flood of progress lines, of orphans, of capacity changes had every one recorded.
Reports about what it does not hold change nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import psycopg
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from contracts import session as ev
from contracts.agent import AgentCapacityChanged, OrphanContainerDestroyed
from contracts.reports import (
    AgentStarted,
    KernelCreatingReport,
    KernelExitedReport,
    KernelProgressReport,
    KernelPullingReport,
    KernelRunningReport,
    OrphanDestroyedReport,
    Report,
    encode_report,
)
from contracts.status import SessionStatus
from contracts.subjects import DEADLETTER_STREAM, REPORTS_STREAM, report_subject
from domain import agent as agent_domain
from services.application.agents import Agents
from services.application.sessions import Sessions
from services.common.settings import Settings
from services.controller.main import run_controller
from services.projector.main import run_projector
from services.relay.main import run_relay
from tests.integration.test_controller import GIB, agent_status, drained, has_status, now, schedule
from tests.support.hostile_agent import HOSTILE, hostile_nc  # noqa: F401 - the fixture
from services.common.bus import connect
from services.common.bus_identities import agent_identity
from services.supervisor.embedded import NatsServer
from tests.support.projector import caught_up
from tests.support.publish import ServiceTasks, service_tasks
from tests.support.waiting import async_wait_for

HONEST = "honest"
BURST, INTERVAL = 3, 1.0
"""``domain.session.PROGRESS_BURST`` and ``PROGRESS_INTERVAL`` (seconds)."""


@pytest.fixture
async def pipeline(js: JetStreamContext, nats_url: str, pg_dsn: str,
                   apps: tuple[Sessions, Agents]) -> AsyncIterator[ServiceTasks]:
    """The relay, the projector and the controller (no agent beats: none is ever lost)."""
    settings = Settings(nats_url=nats_url, pg_dsn=pg_dsn, heartbeat_timeout=3600.0)
    async with service_tasks() as tasks:
        tasks.start("relay", lambda stop: run_relay(settings, stop))
        tasks.start("projector", lambda stop: run_projector(settings, stop))
        tasks.start("controller", lambda stop: run_controller(settings, stop))
        yield tasks
        tasks.check()


@pytest.fixture
async def honest_nc(nats_server: NatsServer, js: JetStreamContext) -> AsyncIterator[Client]:
    """A connection with the agent ``HONEST``'s own credential."""
    nc = await connect(nats_server.url, "honest-agent", nats_server.credentials(agent_identity(HONEST)))
    try:
        yield nc
    finally:
        await nc.close()


async def send(nc: Client, report: Report) -> None:
    """Publishes ``report`` with ``nc``'s identity on the subject of ``report.agent_id``."""
    await nc.jetstream().publish(report_subject(report.agent_id, report.type_name()), encode_report(report))


async def registered(nc: Client, agents: Agents, agent_id: str, hostname: str = "h",
                     backend: str = "simulated") -> None:
    await send(nc, AgentStarted(agent_id=agent_id, observed_at=now(), capacity={"cpu": Decimal(4), "mem": 8 * GIB},
                                backend=backend, hostname=hostname))
    await async_wait_for(lambda: agent_status(agents, agent_id), timeout=60, message=f"{agent_id} not registered")


def row(dsn: str, query: str, key: str) -> tuple | None:  # type: ignore[type-arg]
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, (key,)).fetchone()


async def test_values_no_read_model_can_store_never_reach_an_event(
        js: JetStreamContext, pipeline: ServiceTasks, hostile_nc: Client, apps: tuple[Sessions, Agents],
        pg_dsn: str) -> None:
    sessions, agents = apps
    await registered(hostile_nc, agents, HOSTILE, hostname="h\x00st", backend="sim\x00ulated")
    session_id, kernel_id = await asyncio.to_thread(schedule, sessions, HOSTILE)
    base = {"agent_id": HOSTILE, "session_id": session_id, "kernel_id": kernel_id}

    await send(hostile_nc, KernelRunningReport(observed_at=now(), container_id="c\x00id", **base))
    await async_wait_for(lambda: has_status(sessions, session_id, SessionStatus.RUNNING), timeout=60)
    await send(hostile_nc, KernelExitedReport(observed_at=now(), exit_code=2**40, **base))
    await async_wait_for(lambda: has_status(sessions, session_id, SessionStatus.TERMINATED), timeout=60,
                         message="the exit applies, only its code is not believed")
    await caught_up(pg_dsn, timeout=90)

    kernel = row(pg_dsn, "SELECT status, exit_code, container_id FROM kernels WHERE kernel_id = %s", kernel_id)
    assert kernel == ("TERMINATED", None, "c\ufffdid")
    agent = row(pg_dsn, "SELECT hostname, backend FROM agents WHERE agent_id = %s", HOSTILE)
    assert agent == ("h\ufffdst", "sim\ufffdulated")
    assert (await js.stream_info(DEADLETTER_STREAM)).state.messages == 0, "the projector dead-lettered nothing"


async def test_a_flood_of_progress_records_one_line_per_interval(
        js: JetStreamContext, pipeline: ServiceTasks, hostile_nc: Client, apps: tuple[Sessions, Agents]) -> None:
    sessions, agents = apps
    await registered(hostile_nc, agents, HOSTILE)
    session_id, kernel_id = await asyncio.to_thread(schedule, sessions, HOSTILE)
    base = {"agent_id": HOSTILE, "session_id": session_id, "kernel_id": kernel_id}
    await send(hostile_nc, KernelPullingReport(observed_at=now(), **base))
    await async_wait_for(lambda: has_status(sessions, session_id, SessionStatus.PREPARING), timeout=60)

    flood = 300
    began = time.monotonic()
    for index in range(flood):
        await send(hostile_nc, KernelProgressReport(observed_at=now(), detail=f"{index:04d} " + "x" * 1900, **base))
    await send(hostile_nc, KernelCreatingReport(observed_at=now(), **base))
    await async_wait_for(lambda: has_status(sessions, session_id, SessionStatus.CREATING), timeout=120)
    await async_wait_for(lambda: drained(js), timeout=60)
    took = time.monotonic() - began

    events = await asyncio.to_thread(sessions.load, session_id)
    recorded = sum(isinstance(event, ev.KernelProgressed) for event in events)
    assert 1 <= recorded <= BURST + took / INTERVAL + 1, (recorded, took)
    assert recorded < flood


async def test_reports_about_what_it_does_not_hold_change_nothing(
        js: JetStreamContext, pipeline: ServiceTasks, hostile_nc: Client, honest_nc: Client,
        apps: tuple[Sessions, Agents]) -> None:
    """Another agent's kernel (of another tenant's session), an unknown kernel or session, another agent's id in the
    body, an exit of a kernel it never started: each is refused (dead-lettered in its own share); the honest
    agent's session goes on, and its own reports still apply."""
    sessions, agents = apps
    await registered(hostile_nc, agents, HOSTILE)
    await registered(honest_nc, agents, HONEST)
    victim, victim_kernel = await asyncio.to_thread(schedule, sessions, HONEST)
    await send(honest_nc, KernelRunningReport(agent_id=HONEST, observed_at=now(), session_id=victim,
                                              kernel_id=victim_kernel, container_id="c"))
    await async_wait_for(lambda: has_status(sessions, victim, SessionStatus.RUNNING), timeout=60)
    before = len(await asyncio.to_thread(sessions.load, victim))

    own = {"agent_id": HOSTILE, "observed_at": now()}
    for report in (
        KernelExitedReport(**own, session_id=victim, kernel_id=victim_kernel, exit_code=1),
        KernelExitedReport(**own, session_id=victim, kernel_id="nope"),
        KernelExitedReport(**own, session_id="nope", kernel_id=victim_kernel),
        KernelRunningReport(**own, session_id=victim, kernel_id=victim_kernel, container_id="mine"),
    ):
        await send(hostile_nc, report)
    forged = KernelExitedReport(agent_id=HONEST, observed_at=now(), session_id=victim, kernel_id=victim_kernel)
    await hostile_nc.jetstream().publish(report_subject(HOSTILE, "kernel_exited"), encode_report(forged))
    await async_wait_for(lambda: drained(js), timeout=60)

    assert len(await asyncio.to_thread(sessions.load, victim)) == before
    assert await has_status(sessions, victim, SessionStatus.RUNNING)
    info = await js.stream_info(DEADLETTER_STREAM, subjects_filter="dlq.>")
    assert sum(info.state.subjects.values()) == 5 and all(HOSTILE in subject for subject in info.state.subjects)
    await send(honest_nc, KernelExitedReport(agent_id=HONEST, observed_at=now(), session_id=victim,
                                             kernel_id=victim_kernel, exit_code=0))
    await async_wait_for(lambda: has_status(sessions, victim, SessionStatus.TERMINATED), timeout=60)
    assert (await js.stream_info(REPORTS_STREAM)).state.messages == 0


async def test_a_flood_of_orphans_and_capacity_changes_is_bounded_past_a_burst(
        js: JetStreamContext, pipeline: ServiceTasks, hostile_nc: Client, apps: tuple[Sessions, Agents],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each orphan report, each capacity change was recorded: the event store grew as fast as the controller took
    them, and each capacity change had the scheduler run a pass. Past a burst (made small here for orphans), an orphan
    report is refused (dead-lettered) and a capacity change not recorded (the registration is no error)."""
    monkeypatch.setattr(agent_domain, "ORPHAN_BURST", 5, raising=False)
    sessions, agents = apps
    await registered(hostile_nc, agents, HOSTILE)
    flood = 40
    began = time.monotonic()
    for index in range(flood):
        await send(hostile_nc, OrphanDestroyedReport(agent_id=HOSTILE, observed_at=now(), kernel_id="k",
                                                     container_id="c", exit_code=0))
        await send(hostile_nc, AgentStarted(agent_id=HOSTILE, observed_at=now(), backend="simulated", hostname="h",
                                            capacity={"cpu": Decimal(5 + index), "mem": 8 * GIB}))
    await async_wait_for(lambda: drained(js), timeout=120)
    took = time.monotonic() - began

    events = await asyncio.to_thread(sessions.load, HOSTILE)
    orphans = sum(isinstance(event, OrphanContainerDestroyed) for event in events)
    changes = sum(isinstance(event, AgentCapacityChanged) for event in events)
    assert 1 <= orphans <= 5 + took + 1, (orphans, took)
    assert 1 <= changes <= 5 + took / 60 + 1, (changes, took)
    info = await js.stream_info(DEADLETTER_STREAM, subjects_filter="dlq.>")
    assert sum(info.state.subjects.values()) == flood - orphans, "each refused orphan dead-lettered, nothing else"


async def test_a_message_id_no_read_model_can_store_never_reaches_an_event(
        js: JetStreamContext, pipeline: ServiceTasks, hostile_nc: Client, apps: tuple[Sessions, Agents],
        pg_dsn: str) -> None:
    """A report's ``Nats-Msg-Id`` (the sender's to write) is the causation id of the events it causes: a NUL there had
    the projector dead-letter every one (the session stayed SCHEDULED in the read models, its end and its quota's
    release would have been lost as well), and 30 KB of it were copied into each."""
    sessions, agents = apps
    await registered(hostile_nc, agents, HOSTILE)
    session_id, kernel_id = await asyncio.to_thread(schedule, sessions, HOSTILE)
    report = KernelRunningReport(agent_id=HOSTILE, observed_at=now(), session_id=session_id, kernel_id=kernel_id,
                                 container_id="c")
    await hostile_nc.jetstream().publish(report_subject(HOSTILE, report.type_name()), encode_report(report),
                                         headers={"Nats-Msg-Id": "a\x00b" + "x" * 30_000})
    await async_wait_for(lambda: has_status(sessions, session_id, SessionStatus.RUNNING), timeout=60)

    causation = (await asyncio.to_thread(sessions.load, session_id))[-1].metadata.causation_id
    assert causation is not None and causation.startswith("a\ufffdbxxx") and len(causation) <= 512
    await caught_up(pg_dsn, timeout=90)
    assert row(pg_dsn, "SELECT status FROM sessions WHERE session_id = %s", session_id) == ("RUNNING",)
    assert (await js.stream_info(DEADLETTER_STREAM)).state.messages == 0, "the projector dead-lettered nothing"
