"""One sender's dead letters are bounded in bytes, on a real NATS server: a hostile agent filling its own
``dlq.agent-<id>`` with the largest letters the stream takes, and its share of the controller's with its largest
undecodable reports, holds a small part of ``DEADLETTER`` (before, up to 320 KiB a letter: three such agents filled
its 1 GiB and every other sender's letters were refused). A letter keeps at most ``DEADLETTER_KEPT_BYTES`` of a
message; a cut one is shown cut (``berth dlq ls`` / ``show``, through a real gateway) and refused for replay with the
reason, while an ordinary report's letter is kept whole and replayed."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from contracts.envelope import utc_now
from contracts.reports import KernelExitedReport, encode_report
from contracts.subjects import DEADLETTER_STREAM, REPORTS_STREAM, dead_letter_subject, report_subject
from services.common.bus import (
    DEADLETTER_KEPT_BYTES, DEADLETTER_MAX_BYTES, DEADLETTER_MAX_MSG_SIZE, DEADLETTER_MAX_PER_CONSUMER,
    REPORTS_MAX_MSG_SIZE, dead_letter,
)
from services.common.bus_identities import agent_identity
from tests.support.cli import as_json, berth
from tests.support.gateway import Keys, clean_streams, keys, read_models, served  # noqa: F401 - fixtures
from tests.support.hostile_agent import HOSTILE, hostile_nc  # noqa: F401 - the fixture
from tests.unit.test_report_bounds import largest_reports

KIND = "kernel_exited"
FILLERS = 20
"""How many hostile agents at least it must take to fill ``DEADLETTER``: one holds under a twentieth of it."""


async def test_a_hostile_agent_holds_a_bounded_share_of_the_dead_letter_bytes(
        js: JetStreamContext, hostile_nc: Client) -> None:
    own = dead_letter_subject(agent_identity(HOSTILE))
    agent_js = hostile_nc.jetstream()
    with pytest.raises(nats.js.errors.APIError, match="message size exceeds maximum allowed"):
        await agent_js.publish(own, b"x" * REPORTS_MAX_MSG_SIZE)  # the stream took up to 320 KiB
    for _ in range(DEADLETTER_MAX_PER_CONSUMER):  # the largest letters its own subject takes
        await agent_js.publish(own, b"x" * DEADLETTER_MAX_MSG_SIZE)
    undecodable = b"\xff" * REPORTS_MAX_MSG_SIZE  # its largest reports, every one dead-lettered by the controller
    for _ in range(DEADLETTER_MAX_PER_CONSUMER):
        assert await dead_letter(js, "controller", report_subject(HOSTILE, KIND), undecodable, "DecodeError: no")

    held = (await js.stream_info(DEADLETTER_STREAM)).state.bytes
    assert held * FILLERS < DEADLETTER_MAX_BYTES, f"one agent holds {held} bytes of {DEADLETTER_MAX_BYTES}"
    assert not await dead_letter(js, "controller", report_subject(HOSTILE, KIND), undecodable, "DecodeError: no")
    assert await dead_letter(js, "controller", report_subject("a1", KIND), b"{}", "PermanentError: no"), (
        "another agent's letters are still taken")
    assert await dead_letter(js, "projector", "ev.session.s1.requested", b"{}", "PermanentError: no")


async def test_a_cut_letter_is_shown_cut_and_refused_for_replay_while_an_ordinary_one_replays(
        served: str, keys: Keys, clean_streams: Any) -> None:
    js = clean_streams
    [large] = [data for kind, data in largest_reports() if kind == KIND]  # about 50 KB: the bounds let it through
    ordinary = encode_report(KernelExitedReport(agent_id="a1", observed_at=utc_now(), kernel_id="k1", session_id="s1"))
    for data in (large, ordinary):
        assert await dead_letter(js, "controller", report_subject("a1", KIND), data, "PermanentError: not yet")

    cut, whole = (await as_json(served, keys.admin, "dlq", "ls"))["entries"]
    assert (cut["cut"], cut["size"], cut["originalSize"]) == (True, DEADLETTER_KEPT_BYTES, len(large))
    assert (whole["cut"], whole["size"], whole["originalSize"]) == (False, len(ordinary), len(ordinary))
    _, _, err = await berth(served, keys.admin, "dlq", "show", str(cut["seq"]))
    assert f"only the first {DEADLETTER_KEPT_BYTES} of the message's {len(large)} bytes were kept" in err

    status, out, _ = await berth(served, keys.admin, "-o", "json", "dlq", "replay", "--consumer", "controller",
                                 ok=False)
    outcome = json.loads(out)
    assert status == 1 and outcome["done"] == [whole["seq"]]
    [refusal] = outcome["refused"]
    assert refusal["seq"] == cut["seq"] and "too large to dead-letter whole" in refusal["reason"]
    assert hashlib.sha256(large).hexdigest() in refusal["reason"]
    replayed = await js.get_msg(REPORTS_STREAM, seq=(await js.stream_info(REPORTS_STREAM)).state.last_seq)
    assert replayed.data == ordinary
    assert [e["seq"] for e in (await as_json(served, keys.admin, "dlq", "ls"))["entries"]] == [cut["seq"]]
