"""Hostile heartbeats on a real NATS server, put with the agent's own credential (all its identity may write): the
bucket refuses one over ``HEARTBEAT_MAX_BYTES`` at put (the connection stays); one within it whose lists are over
their bounds is dropped by the controller's watch with a log, never taken as a beat nor as kernel activity, and the
watch goes on (the agent's next heartbeat counts); a bucket an older version created is brought to the limit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import msgspec
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue

from contracts.reports import AgentHeartbeat
from contracts.subjects import HEARTBEAT_BUCKET
from services.common.bus import HEARTBEAT_MAX_BYTES, connect, existing_heartbeat_bucket, heartbeat_bucket
from services.common.bus_identities import agent_identity
from services.controller.liveness import Liveness, kernel_activity, watch_heartbeats
from services.controller.timeouts import KernelActivity
from services.supervisor.embedded import NatsServer
from tests.support.waiting import async_wait_for

AGENT = "evil"


@pytest.fixture
async def agent_nc(nats_server: NatsServer, js: JetStreamContext) -> AsyncIterator[Client]:
    """A connection with the agent ``AGENT``'s own credential, once the bucket exists (created as a service does)."""
    await heartbeat_bucket(js)
    nc = await connect(nats_server.url, "heartbeat-bounds-agent", nats_server.credentials(agent_identity(AGENT)))
    try:
        yield nc
    finally:
        await nc.close()


@pytest.fixture
async def agent_bucket(agent_nc: Client) -> KeyValue:
    """The heartbeat bucket as the agent ``AGENT`` reaches it."""
    return await existing_heartbeat_bucket(agent_nc.jetstream())


@contextlib.asynccontextmanager
async def watching(kv: KeyValue, liveness: Liveness) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(watch_heartbeats(kv, liveness, stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_the_bucket_refuses_a_heartbeat_over_its_size(agent_nc: Client, agent_bucket: KeyValue) -> None:
    entries = (agent_nc.max_payload - 1024) // 3  # a heartbeat nearly max_payload long: 350,000 empty kernel ids
    data = msgspec.json.encode({"agent_id": AGENT, "sent_at": 1.0, "busy_kernels": [""] * entries})
    with pytest.raises(nats.js.errors.APIError):
        await agent_bucket.put(AGENT, data)
    assert agent_nc.is_connected, "a refusal of the bucket, not of the server: the agent's connection stays"


async def test_the_watch_drops_a_heartbeat_over_its_bounds_and_goes_on(
        js: JetStreamContext, agent_bucket: KeyValue, caplog: pytest.LogCaptureFixture) -> None:
    kv = await heartbeat_bucket(js)
    liveness = Liveness(timeout=5.0)
    kernels = [f"{i:x}" for i in range(40_000)]
    hostile = msgspec.json.encode({"agent_id": AGENT, "sent_at": 10.0, "busy_kernels": kernels,
                                   "app_traffic": dict.fromkeys(kernels[:5_000], 1e9)})
    assert len(hostile) < HEARTBEAT_MAX_BYTES, "within the bucket's size: only its lists are over their bounds"
    async with watching(kv, liveness) as watch:
        await agent_bucket.put(AGENT, hostile)
        await async_wait_for(lambda: f"ignoring a malformed heartbeat under '{AGENT}'" in caplog.text, timeout=10,
                             message="the controller's watch took the hostile heartbeat")
        assert liveness.newer(AGENT, 0.0), "not taken as a beat"
        assert await kernel_activity(kv, AGENT) == KernelActivity(), "nor as kernel activity"

        await agent_bucket.put(AGENT, msgspec.json.encode(AgentHeartbeat(agent_id=AGENT, sent_at=20.0,
                                                                         busy_kernels=["k1"])))
        await async_wait_for(lambda: not liveness.newer(AGENT, 19.0), timeout=10,
                             message="the watch went on: the agent's next heartbeat counts")
        assert not watch.done()
        assert (await kernel_activity(kv, AGENT)).busy == frozenset({"k1"})


async def test_a_bucket_an_older_version_created_is_brought_to_the_limit(js: JetStreamContext) -> None:
    await js.delete_key_value(HEARTBEAT_BUCKET)
    older = await js.create_key_value(KeyValueConfig(bucket=HEARTBEAT_BUCKET, history=1))  # no value size
    await older.put("a1", msgspec.json.encode(AgentHeartbeat(agent_id="a1", sent_at=5.0)))

    kv = await heartbeat_bucket(js)

    assert (await js.stream_info(f"KV_{HEARTBEAT_BUCKET}")).config.max_msg_size == HEARTBEAT_MAX_BYTES
    assert msgspec.json.decode((await kv.get("a1")).value or b"", type=AgentHeartbeat).sent_at == 5.0
    with pytest.raises(nats.js.errors.APIError):
        await kv.put("a1", b"x" * (HEARTBEAT_MAX_BYTES + 1))
