"""The controller while PostgreSQL is away (a TCP proxy the test closes, on real NATS and PostgreSQL):
a report that arrives meanwhile fails its batch with a database error; it is retried (the wait is
in ``OUTAGES``) until the database is back and then applied once — no crash, no dead letter,
nothing left to the server's ``max_deliver``."""

from __future__ import annotations

import asyncio

import pytest

from nats.js import JetStreamContext

from contracts.reports import encode_report
from contracts.status import SessionStatus
from contracts.subjects import REPORTS_STREAM, report_subject
from services.application.agents import Agents
from services.application.sessions import Sessions
from services.common.settings import Settings
from services.common.transient import OUTAGES
from services.controller.flow import DURABLE
from services.controller.main import run_controller
from tests.integration.test_flow import dead_letters
from tests.integration.test_flow_outages import outage_tries
from tests.integration.test_report_batches import placed, running
from tests.support.publish import service_tasks
from tests.support.tcp_proxy import tcp_proxy
from tests.support.waiting import async_wait_for


async def consumer_ready(js: JetStreamContext) -> bool:
    try:
        await js.consumer_info(REPORTS_STREAM, DURABLE)
    except Exception:  # noqa: BLE001 - not yet
        return False
    return True


async def test_a_report_waits_out_a_database_outage_and_is_applied_once(
        nats_url: str, js: JetStreamContext, pg_dsn: str, apps: tuple[Sessions, Agents],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the controller's event store waits 1 s (not 30) for a connection, and retries each
    # statement ten times: one try fails after about 15 s instead of minutes
    monkeypatch.setenv("POSTGRES_CONNECT_TIMEOUT", "1")
    sessions, agents = apps
    kernel_id = await asyncio.to_thread(placed, sessions, agents, "s1")
    sender, report, msg_id = running("s1", kernel_id)
    async with tcp_proxy(pg_dsn) as proxy, service_tasks() as tasks:
        settings = Settings(nats_url=nats_url, pg_dsn=proxy.url(pg_dsn), heartbeat_interval=0.5,
                            heartbeat_timeout=600)
        tasks.start("controller", lambda stop: run_controller(settings, stop))
        await async_wait_for(lambda: consumer_ready(js), timeout=30, message="controller consuming")
        await proxy.close()  # PostgreSQL goes away
        await js.publish(report_subject(sender, report.type_name()), encode_report(report), stream=REPORTS_STREAM,
                         headers={"Nats-Msg-Id": msg_id})
        # two failed tries: the outage lasts well past the old five tries' backoff (8 s)
        await async_wait_for(lambda: outage_tries(DURABLE) >= 2, timeout=180,
                             message=f"the controller retries while PostgreSQL is away: {OUTAGES.describe()}")
        await proxy.open()  # and comes back
        await async_wait_for(lambda: asyncio.to_thread(lambda: sessions.get("s1").status is SessionStatus.RUNNING),
                             timeout=30, message="the report applied after the outage")
        await async_wait_for(lambda: outage_tries(DURABLE) == 0, timeout=10, message="outage cleared")
        await async_wait_for(lambda: stream_empty(js), timeout=10, message="the report acknowledged")
        await tasks.stop("controller")
    history = [type(e).type_name() for e in await asyncio.to_thread(sessions.load, "s1")]
    assert history.count("session.kernel_started") == 1, history
    assert await dead_letters(js, DURABLE) == []


async def stream_empty(js: JetStreamContext) -> bool:
    return (await js.stream_info(REPORTS_STREAM)).state.messages == 0
