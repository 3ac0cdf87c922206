"""``DEADLETTER`` is bounded, on a real NATS server: an agent publishing on its own dead-letter subject (all its
identity may write there) fills that subject alone, up to ``DEADLETTER_MAX_PER_CONSUMER`` letters of at most
``DEADLETTER_MAX_MSG_SIZE`` bytes; then its new letters are refused and the old ones kept, while other consumers'
letters are still taken. A consumer whose dead letter is refused drops the message with a log and goes on; a stream an
older version created (unbounded, old letters discarded first) is brought to the bounds without losing a letter."""

from __future__ import annotations

import dataclasses

import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy

from contracts.subjects import DEADLETTER_STREAM, dead_letter_subject
from services.common.bus import (
    DEADLETTER_MAX_MSG_SIZE, DEADLETTER_MAX_PER_CONSUMER, STREAMS, dead_letter, ensure_streams,
)
from services.common.bus_identities import agent_identity
from services.gateway.deadletters import queue
from tests.integration.test_flow import Recorder, assigned, publish, running, table
from tests.support.hostile_agent import HOSTILE, PAYLOAD, fill, hostile_nc  # noqa: F401 - the fixture
from tests.support.waiting import async_wait_for


async def test_an_agent_fills_only_its_own_dead_letter_subject(js: JetStreamContext, hostile_nc: Client) -> None:
    own = dead_letter_subject(agent_identity(HOSTILE))
    agent_js = hostile_nc.jetstream()
    with pytest.raises(nats.js.errors.APIError, match="message size exceeds maximum allowed"):
        await agent_js.publish(own, b"x" * (DEADLETTER_MAX_MSG_SIZE + 1))
    await fill(agent_js, own, DEADLETTER_MAX_PER_CONSUMER)
    with pytest.raises(nats.js.errors.APIError, match="maximum messages per subject exceeded"):
        await agent_js.publish(own, b"one more")
    assert hostile_nc.is_connected, "a refusal of the stream: the agent's connection stays"

    assert await dead_letter(js, "controller", "rp.agent.a1.kernel_running", b"{}", "PermanentError: no")
    counts = (await js.stream_info(DEADLETTER_STREAM, subjects_filter="dlq.>")).state.subjects
    assert counts == {own: DEADLETTER_MAX_PER_CONSUMER, dead_letter_subject("controller", "a1"): 1}
    [first] = await queue.entries(js, agent_identity(HOSTILE), limit=1)
    assert first.data == PAYLOAD + b"0", "the oldest letter is kept"


async def test_a_refused_dead_letter_is_dropped_with_a_log_and_the_consumer_goes_on(
        nats_url: str, js: JetStreamContext, caplog: pytest.LogCaptureFixture) -> None:
    await fill(js, dead_letter_subject("flowtest-a1"), DEADLETTER_MAX_PER_CONSUMER)
    await publish(js, [assigned("a1", 1, "bad-1"), assigned("a1", 2, "ok-2")])
    target = Recorder()
    async with running(nats_url, js, table(), target):
        await async_wait_for(lambda: target.handled == ["ok-2"], timeout=30, message=f"handled {target.handled}")

        async def settled() -> bool:
            info = await js.consumer_info("EVENTS", "flowtest-a1")
            return info.num_pending == 0 and info.num_ack_pending == 0

        await async_wait_for(settled, timeout=30, message="the refused message was not settled")
    assert target.attempts["bad-1"] == 1, "dropped at once, not retried"
    assert "DEADLETTER refused the dead letter (maximum messages per subject exceeded)" in caplog.text
    assert await queue.count(js, "flowtest-a1") == DEADLETTER_MAX_PER_CONSUMER
    [first] = await queue.entries(js, "flowtest-a1", limit=1)
    assert first.data == PAYLOAD + b"0", "the letters held are kept"


async def test_an_older_unbounded_stream_is_bounded_without_losing_a_letter(js: JetStreamContext) -> None:
    await js.delete_stream(DEADLETTER_STREAM)
    [bounded] = [c for c in STREAMS if c.name == DEADLETTER_STREAM]
    older = dataclasses.replace(bounded, discard=DiscardPolicy.OLD, discard_new_per_subject=False,
                                max_bytes=None, max_msgs_per_subject=None, max_msg_size=None)
    await js.add_stream(older)  # as a version without the bounds declared it
    held = DEADLETTER_MAX_PER_CONSUMER + 5
    await fill(js, dead_letter_subject("controller"), held)

    await ensure_streams(js)

    info = await js.stream_info(DEADLETTER_STREAM)
    assert (info.config.max_msg_size, info.config.discard) == (DEADLETTER_MAX_MSG_SIZE, DiscardPolicy.NEW)
    assert info.state.messages == held, "no letter lost"
    assert not await dead_letter(js, "controller", "rp.storage.v1.purged", b"{}", "PermanentError: no")
    assert await dead_letter(js, "controller", "rp.agent.a1.kernel_running", b"{}", "PermanentError: no"), (
        "an agent's report has its own share")
    assert await dead_letter(js, "scheduler", "ev.session.s1.requested", b"{}", "PermanentError: no")
    [first] = await queue.entries(js, "controller", limit=1)
    assert first.data == PAYLOAD + b"0"
    assert await queue.count(js, "controller") == held + 1, "the older letters are the controller's with the new"
