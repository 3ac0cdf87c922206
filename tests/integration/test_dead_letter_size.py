"""Dead letters and report sizes on a real NATS server: a message that fits ``max_payload`` alone but not with
the dead letter's headers (nor ``DEADLETTER_MAX_MSG_SIZE``) is dead-lettered truncated to ``DEADLETTER_KEPT_BYTES``,
saying so (its size, its SHA-256), and the connection stays up (nats-py checks only the payload; the server closed
the connection for good); ``REPORTS`` refuses an oversized report at publish, takes the largest legitimate one, and an
existing stream is brought to the limit."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import AsyncIterator

import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from contracts.subjects import (
    HEADER_CONSUMER, HEADER_DELIVERIES, HEADER_ERROR, HEADER_ORIGINAL_SHA256, HEADER_ORIGINAL_SIZE,
    HEADER_ORIGINAL_SUBJECT, HEADER_TRUNCATED, REPORTS_STREAM,
)
from services.common.bus import (
    DEADLETTER_KEPT_BYTES,
    DEADLETTER_MAX_MSG_SIZE,
    REPORTS_MAX_MSG_SIZE,
    STREAMS,
    connect,
    dead_letter,
    ensure_streams,
)
from services.gateway.deadletters import queue
from tests.integration.test_flow import async_wait_for_letters
from tests.unit.test_report_bounds import largest_reports

HOSTILE_SUBJECT = "rp.agent.evil.kernel_running"


@pytest.fixture
async def nc(nats_url: str, js: JetStreamContext) -> AsyncIterator[Client]:
    """A connection of its own (the streams reset by ``js``), as a consumer holds one."""
    client = await connect(nats_url, "dead-letter-size-test")
    try:
        yield client
    finally:
        await client.close()


async def test_a_message_too_big_with_the_headers_is_dead_lettered_truncated(nc: Client) -> None:
    js = nc.jetstream()
    data = b"\xff" + b"x" * (nc.max_payload - 17)  # nearly max_payload, undecodable, as a hostile agent sent it
    await dead_letter(js, "controller", HOSTILE_SUBJECT, data, "DecodeError: JSON is malformed", deliveries=1)

    assert nc.is_connected, "the connection survived the dead letter"
    [letter] = await async_wait_for_letters(js, "controller", 1)
    headers = letter.headers or {}
    assert headers[HEADER_TRUNCATED] == "true"
    assert headers[HEADER_ORIGINAL_SIZE] == str(len(data))
    assert headers[HEADER_ORIGINAL_SHA256] == hashlib.sha256(data).hexdigest()
    assert headers[HEADER_ERROR] == "DecodeError: JSON is malformed"
    assert (headers[HEADER_ORIGINAL_SUBJECT], headers[HEADER_CONSUMER], headers[HEADER_DELIVERIES]) == (
        HOSTILE_SUBJECT, "controller", "1")
    assert 0 < len(letter.data) < len(data) and data.startswith(letter.data), "its beginning is kept"
    assert len(letter.data) == DEADLETTER_KEPT_BYTES, "as much as a letter keeps"
    [entry] = await queue.entries(js, "controller")
    with pytest.raises(queue.NotReplayableError, match="too large to dead-letter whole"):
        await queue.replay(js, entry)  # its first bytes alone would only be dead-lettered again
    assert await queue.count(js, "controller") == 1, "a refused replay keeps the letter"


async def test_a_message_that_fits_is_dead_lettered_whole(nc: Client) -> None:
    js = nc.jetstream()
    data = b"y" * (min(nc.max_payload, DEADLETTER_MAX_MSG_SIZE) // 2)
    await dead_letter(js, "controller", HOSTILE_SUBJECT, data, "PermanentError: no", deliveries=5)

    [letter] = await async_wait_for_letters(js, "controller", 1)
    assert letter.data == data
    assert not {HEADER_TRUNCATED, HEADER_ORIGINAL_SIZE, HEADER_ORIGINAL_SHA256} & set(letter.headers or {})


async def test_reports_refuses_an_oversized_report_at_publish(nc: Client) -> None:
    js = nc.jetstream()
    with pytest.raises(nats.js.errors.APIError):
        await js.publish(HOSTILE_SUBJECT, b"x" * (REPORTS_MAX_MSG_SIZE + 1))
    assert nc.is_connected, "a refusal of the stream, not of the server: the connection stays"
    for report in largest_reports():
        await js.publish(f"rp.agent.a1.{report[0]}", report[1], headers={"Nats-Msg-Id": uuid.uuid4().hex * 4})
    assert (await js.stream_info(REPORTS_STREAM)).state.messages == len(largest_reports())


async def test_an_existing_reports_stream_is_brought_to_the_limit(nc: Client) -> None:
    js = nc.jetstream()
    await js.delete_stream(REPORTS_STREAM)
    [older] = [dataclasses.replace(c, max_msg_size=None) for c in STREAMS if c.name == REPORTS_STREAM]
    await js.add_stream(older)  # as a version without the limit declared it
    await js.publish(HOSTILE_SUBJECT, b"x" * (nc.max_payload - 200))
    assert (await js.stream_info(REPORTS_STREAM)).config.max_msg_size in (None, -1)

    await ensure_streams(js)

    info = await js.stream_info(REPORTS_STREAM)
    assert info.config.max_msg_size == REPORTS_MAX_MSG_SIZE
    assert info.state.messages == 1, "what it held stays (the consumer dead-letters it, truncated)"
