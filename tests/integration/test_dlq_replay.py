"""Replaying a dead letter on real NATS is exactly once in effect: a replay repeated after a crash
between its publish and its delete stores the report once."""

from __future__ import annotations

from typing import Any

from nats.js.api import Header

from contracts.envelope import utc_now
from contracts.reports import KernelExitedReport, encode_report
from contracts.subjects import REPORTS_STREAM, report_subject
from services.common.bus import dead_letter
from services.gateway.deadletters import queue
from tests.support.gateway import clean_streams  # noqa: F401 - fixture


async def test_a_replay_repeated_after_a_crash_stores_the_report_once(clean_streams: Any) -> None:
    js = clean_streams
    report = KernelExitedReport(agent_id="a1", observed_at=utc_now(), kernel_id="k1", session_id="s1")
    subject = report_subject("a1", report.type_name())
    await dead_letter(js, "controller", subject, encode_report(report), "PermanentError: nope")
    [letter] = await queue.entries(js)
    before = (await js.stream_info(REPORTS_STREAM)).state.messages

    # the first attempt published, then crashed before deleting the entry
    await js.publish(letter.subject, letter.data, headers={Header.MSG_ID.value: f"dlq-replay:{letter.seq}"})
    await queue.replay(js, letter)

    assert (await js.stream_info(REPORTS_STREAM)).state.messages == before + 1
    assert await queue.entries(js) == [] and await queue.count(js) == 0
    stored = await js.get_msg(REPORTS_STREAM, seq=(await js.stream_info(REPORTS_STREAM)).state.last_seq)
    assert (stored.subject, stored.data) == (subject, encode_report(report))
