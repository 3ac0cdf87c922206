"""A letter an agent wrote on its own dead-letter subject is never replayed: its headers are the agent's word, and a
``Berth-Original-Subject`` of another agent's report made the gateway publish that report for it."""

from __future__ import annotations

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from contracts.envelope import utc_now
from contracts.reports import KernelExitedReport, encode_report
from contracts.subjects import HEADER_CONSUMER, HEADER_ERROR, HEADER_ORIGINAL_SUBJECT, REPORTS_STREAM
from contracts.subjects import dead_letter_subject, report_subject
from services.common.bus_identities import agent_identity
from services.gateway.deadletters import queue
from tests.support.hostile_agent import HOSTILE, hostile_nc  # noqa: F401 - the fixture


async def test_a_letter_on_an_agents_own_subject_is_not_replayed_as_another_agents_report(
        js: JetStreamContext, hostile_nc: Client) -> None:
    victim_report = KernelExitedReport(agent_id="a1", observed_at=utc_now(), kernel_id="k1", session_id="s1")
    forged_subject = report_subject("a1", victim_report.type_name())
    await hostile_nc.jetstream().publish(
        dead_letter_subject(agent_identity(HOSTILE)), encode_report(victim_report),
        headers={HEADER_ORIGINAL_SUBJECT: forged_subject, HEADER_CONSUMER: "controller", HEADER_ERROR: "x"})
    [letter] = await queue.entries(js)
    assert letter.consumer == agent_identity(HOSTILE), "a letter's consumer is its subject's, not its headers'"
    before = (await js.stream_info(REPORTS_STREAM)).state.messages

    with pytest.raises(queue.NotReplayableError, match="only letters a service wrote"):
        await queue.replay(js, letter)

    assert (await js.stream_info(REPORTS_STREAM)).state.messages == before, "nothing published as agent a1"
    assert await queue.count(js) == 1, "the letter stays, to be dropped"
