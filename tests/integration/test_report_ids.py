"""A report's message id is keyed with its sender's bus credential (``services.common.report_ids``): another agent,
publishing first on a subject of its own with the id the report would carry, cannot have the REPORTS stream drop it
as a duplicate. Before, ids were ``<agent>:<kernel>:<type>`` (what every agent of a cluster session knows): the
honest agent's ``kernel_running`` was answered ``duplicate`` and dropped, and its session stayed SCHEDULED."""

from __future__ import annotations

import datetime as dt

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from contracts.reports import KernelRunningReport
from contracts.subjects import REPORTS_STREAM, report_subject
from services.agent.reporting import Reporter
from services.common.bus import connect
from services.common.bus_identities import agent_identity
from services.common.report_ids import ReportIds
from services.supervisor.embedded import NatsServer
from tests.support.hostile_agent import HOSTILE, hostile_nc  # noqa: F401 - the fixture

pytestmark = pytest.mark.asyncio

HONEST = "honest"
KERNEL = "s1-k0"


async def test_another_agent_cannot_have_the_stream_drop_an_agent_s_report(
    nats_server: NatsServer, js: JetStreamContext, hostile_nc: Client,
) -> None:
    creds = nats_server.credentials(agent_identity(HONEST))
    report = KernelRunningReport(agent_id=HONEST, observed_at=dt.datetime.now(dt.UTC), session_id="s1",
                                 kernel_id=KERNEL, container_id="c")
    for guess in (f"{HONEST}:{KERNEL}:kernel_running", f"{HONEST}:{KERNEL}:kernel_running~0"):
        await hostile_nc.jetstream().publish(report_subject(HOSTILE, "kernel_running"), b"{}",
                                             headers={"Nats-Msg-Id": guess})
    nc = await connect(nats_server.url, "honest-agent", creds)
    try:
        reporter = Reporter(nc.jetstream(), HONEST, ReportIds.of_credentials(creds))
        await reporter.send_kernel(report, KERNEL)
        await reporter.send_kernel(report, KERNEL)  # sent again (a redelivered assignment): stored once
    finally:
        await nc.close()
    subject = report_subject(HONEST, "kernel_running")
    info = await js.stream_info(REPORTS_STREAM, subjects_filter=subject)
    assert info.state.subjects == {subject: 1}
