"""Every service recovers by itself (real NATS of the test's own, real PostgreSQL): the relay, the
scheduler, the controller and a simulated agent place and run sessions before, and again after,
PostgreSQL drops every connection of the database (as a restart does) and after NATS restarts —
no service stops, nothing is dead-lettered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from contracts.status import SessionStatus
from services.agent.backends.simulated import SimulatedBackend
from services.agent.main import run_agent
from services.application.agents import Agents
from services.application.sessions import Sessions
from services.common.settings import Settings
from services.controller.main import run_controller
from services.relay.main import run_relay
from services.scheduler.main import run_scheduler
from services.supervisor.embedded import NatsServer
from tests.integration.test_controller_flow import AGENT, HEARTBEAT_TIMEOUT, request
from tests.integration.test_flow import dead_letters
from tests.support.publish import ServiceTasks, service_tasks
from tests.support.relay import jetstream, own_nats  # noqa: F401 - fixture
from tests.support.waiting import async_wait_for

RECOVERY = 90.0
"""Seconds a session requested after the fault has to run: the event store's own retries and the
consumers' backoff come first."""


@pytest.fixture
async def cluster(own_nats: NatsServer, pg_dsn: str, apps: tuple[Sessions, Agents]) -> AsyncIterator[ServiceTasks]:
    settings = Settings(nats_url=own_nats.url, pg_dsn=pg_dsn, agent_id=AGENT, agent_capacity="cpu=4,mem=8g",
                        sim_delay=0.01, heartbeat_interval=0.1, heartbeat_timeout=HEARTBEAT_TIMEOUT)
    async with service_tasks() as tasks:
        tasks.start("relay", lambda stop: run_relay(settings, stop))
        tasks.start("scheduler", lambda stop: run_scheduler(settings, stop))
        tasks.start("controller", lambda stop: run_controller(settings, stop))
        tasks.start("agent", lambda stop: run_agent(settings, stop, backend=SimulatedBackend(delay=0.01)))
        yield tasks


async def runs(sessions: Sessions, timeout: float) -> None:
    session_id, _ = await request(sessions)

    async def running() -> bool:
        state = await asyncio.to_thread(sessions.get, session_id)
        return state is not None and state.status is SessionStatus.RUNNING

    await async_wait_for(running, timeout=timeout, message=f"session {session_id} did not run")


def drop_connections(dsn: str) -> int:
    """Terminates every other connection to the database of ``dsn``; returns how many."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall()
    return len(rows)


async def no_dead_letters(url: str) -> None:
    async with jetstream(url) as js:
        for consumer in ("controller", f"agent-{AGENT}"):
            assert await dead_letters(js, consumer) == [], consumer


async def test_services_recover_from_a_postgresql_restart(cluster: ServiceTasks, apps: tuple[Sessions, Agents],
                                                          pg_dsn: str, own_nats: NatsServer) -> None:
    sessions, _ = apps
    await runs(sessions, 30)
    assert drop_connections(pg_dsn) > 0
    await runs(sessions, RECOVERY)
    cluster.check()
    await no_dead_letters(own_nats.url)


async def test_services_recover_from_a_nats_restart(cluster: ServiceTasks, apps: tuple[Sessions, Agents],
                                                    own_nats: NatsServer, tmp_path: Path) -> None:
    sessions, _ = apps
    await runs(sessions, 30)
    data_dir, port = own_nats.data_dir, own_nats.port
    assert data_dir is not None
    own_nats.stop()
    own_nats.start(data_dir, port=port)
    await runs(sessions, RECOVERY)
    cluster.check()
    await no_dead_letters(own_nats.url)
