"""``REPORTS`` is bounded, on a real NATS server: an agent publishing on its own report subjects (all its identity may
write there) as fast as it likes, or the controller away, no longer grows it without bound. A subject (one agent, one
kind of report) holds at most ``REPORTS_MAX_PER_SUBJECT`` reports; past it that subject's new reports are refused and
the old ones kept, while other agents' reports are still taken. A legitimate agent whose report is refused waits, as
for NATS away, and sends it again once the controller took some: the report is neither lost nor dead-lettered. A
stream an older version created (unbounded, old reports discarded first) is brought to the bounds without losing a
report."""

from __future__ import annotations

import dataclasses

import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy

from contracts.reports import KernelRunningReport, decode_report
from contracts.subjects import REPORTS_STREAM, report_subject
from services.agent.main import run_agent
from services.common.bus import REPORTS_MAX_BYTES, REPORTS_MAX_PER_SUBJECT, STREAMS, ensure_streams
from services.common.bus_identities import agent_identity
from services.common.settings import Settings
from services.common.transient import OUTAGES
from services.gateway.deadletters import queue
from tests.support.agent_reports import AGENT, AgentHistory
from tests.support.agent_reports import history, services, settings  # noqa: F401 - the fixtures
from tests.support.hostile_agent import HOSTILE, PAYLOAD, fill, hostile_nc  # noqa: F401 - the fixture
from tests.support.publish import ServiceTasks
from tests.support.waiting import async_wait_for


async def first_on(js: JetStreamContext, subject: str) -> bytes:
    """Returns the oldest message ``subject`` holds in ``REPORTS``."""
    return (await js.get_msg(REPORTS_STREAM, seq=1, subject=subject, next=True)).data or b""


async def test_an_agent_fills_only_its_own_report_subject(js: JetStreamContext, hostile_nc: Client) -> None:
    own = report_subject(HOSTILE, "kernel_running")
    agent_js = hostile_nc.jetstream()
    await fill(agent_js, own, REPORTS_MAX_PER_SUBJECT)
    with pytest.raises(nats.js.errors.APIError, match="maximum messages per subject exceeded"):
        await agent_js.publish(own, b"one more")
    assert hostile_nc.is_connected, "a refusal of the stream: the agent's connection stays"

    other = report_subject("a1", "kernel_running")
    await js.publish(other, b"{}")
    info = await js.stream_info(REPORTS_STREAM, subjects_filter="rp.>")
    assert info.state.subjects == {own: REPORTS_MAX_PER_SUBJECT, other: 1}
    assert (info.config.max_bytes, info.config.discard) == (REPORTS_MAX_BYTES, DiscardPolicy.NEW)
    assert await first_on(js, own) == PAYLOAD + b"0", "the oldest report is kept"


async def test_a_refused_report_is_sent_again_once_the_controller_took_some(
        js: JetStreamContext, services: ServiceTasks, settings: Settings, history: AgentHistory) -> None:
    running = report_subject(AGENT, "kernel_running")
    await fill(js, running, REPORTS_MAX_PER_SUBJECT)  # the controller away: the agent's running reports wait
    services.start("agent", lambda stop: run_agent(settings, stop))
    await history.assign("k1")

    def waiting() -> bool:
        return any(line.startswith(f"{agent_identity(AGENT)} waiting for nats") and "no room" in line
                   for line in OUTAGES.describe())

    await async_wait_for(waiting, timeout=30, message=f"the agent does not wait for room: {OUTAGES.describe()}")
    taker = await js.pull_subscribe(running, stream=REPORTS_STREAM)  # the controller back: it takes them all
    got: list[bytes] = []

    async def took_the_running_report() -> bool:
        try:
            for msg in await taker.fetch(100, timeout=0.2):
                got.append(msg.data)
                await msg.ack()
        except TimeoutError:
            pass
        return len(got) > REPORTS_MAX_PER_SUBJECT

    await async_wait_for(took_the_running_report, timeout=60, message=f"{len(got)} running reports taken")
    report = decode_report(got[REPORTS_MAX_PER_SUBJECT])
    assert isinstance(report, KernelRunningReport) and report.kernel_id == "k1"
    assert await queue.count(js, agent_identity(AGENT)) == 0, "never dead-lettered"
    await async_wait_for(lambda: not waiting(), timeout=30, message="the agent's wait is over")


async def test_an_older_unbounded_stream_is_bounded_without_losing_a_report(js: JetStreamContext) -> None:
    await js.delete_stream(REPORTS_STREAM)
    [bounded] = [c for c in STREAMS if c.name == REPORTS_STREAM]
    older = dataclasses.replace(bounded, discard=DiscardPolicy.OLD, discard_new_per_subject=False,
                                max_bytes=None, max_msgs_per_subject=None)
    await js.add_stream(older)  # as a version without the bounds declared it
    held = REPORTS_MAX_PER_SUBJECT + 5
    subject = report_subject("a1", "kernel_running")
    await fill(js, subject, held)

    await ensure_streams(js)

    info = await js.stream_info(REPORTS_STREAM)
    assert (info.config.max_bytes, info.config.discard) == (REPORTS_MAX_BYTES, DiscardPolicy.NEW)
    assert info.state.messages == held, "no report lost"
    with pytest.raises(nats.js.errors.APIError, match="maximum messages per subject exceeded"):
        await js.publish(subject, b"one more")
    await js.publish(report_subject("a2", "kernel_running"), b"{}")
    assert await first_on(js, subject) == PAYLOAD + b"0"
