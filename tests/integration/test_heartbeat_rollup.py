"""An agent's credential may put its own heartbeat only: a put carrying a rollup header (``Nats-Rollup: all``) is
refused by the bucket (``services.common.bus.heartbeat_bucket``), and every other agent's heartbeat stays. Before,
nats-py's bucket allowed rollups and one such put wiped every agent's heartbeat."""

from __future__ import annotations

import dataclasses

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from contracts.subjects import HEARTBEAT_BUCKET
from services.common.bus import heartbeat_bucket
from tests.support.hostile_agent import HOSTILE, hostile_nc  # noqa: F401 - the fixture

pytestmark = pytest.mark.asyncio

BEAT = b'{"agent_id": "honest", "sent_at": 1.0}'


async def test_a_rollup_put_by_an_agent_is_refused_and_wipes_nothing(js: JetStreamContext, hostile_nc: Client) -> None:
    kv = await heartbeat_bucket(js)
    await kv.put("honest", BEAT)
    with pytest.raises(Exception, match="(?i)rollup"):
        await hostile_nc.jetstream().publish(f"$KV.{HEARTBEAT_BUCKET}.{HOSTILE}", b"{}",
                                             headers={"Nats-Rollup": "all"})
    assert (await kv.get("honest")).value == BEAT


async def test_a_bucket_an_older_version_made_is_brought_to_refuse_rollups(js: JetStreamContext) -> None:
    await heartbeat_bucket(js)
    stream = f"KV_{HEARTBEAT_BUCKET}"
    config = (await js.stream_info(stream)).config
    await js.update_stream(dataclasses.replace(config, allow_rollup_hdrs=True))  # as nats-py creates a bucket
    await heartbeat_bucket(js)
    assert (await js.stream_info(stream)).config.allow_rollup_hdrs is False
