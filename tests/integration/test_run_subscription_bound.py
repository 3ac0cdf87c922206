"""A run's output subscription in the gateway holds at most ``RUN_PENDING_BYTES`` for its reader, on the real NATS:
past it nats-py drops the run's messages, and the connection (every other run's and request's) stays up. With
nats-py's default (64 MiB per subscription) a gateway that fell behind 16 flooding runs grew to 1.2 GB, kept for
good, and nats-server cut its whole connection as a slow consumer."""

from __future__ import annotations

import asyncio

from services.common.bus import connect
from services.gateway.execution.run_output import RUN_PENDING_BYTES, subscribe_run
from tests.support.waiting import async_wait_for

CHUNK = b"x" * (64 << 10)


async def test_a_run_subscription_nobody_reads_holds_no_more_than_its_bound(nats_url: str) -> None:
    gateway = await connect(nats_url, "test-gateway")
    agent = await connect(nats_url, "test-agent")
    try:
        unread = await subscribe_run(gateway, "io.agent.a.k.unread")
        other = await gateway.subscribe("io.agent.a.k.other")
        sent = 0
        while sent < 4 * RUN_PENDING_BYTES:
            await agent.publish("io.agent.a.k.unread", CHUNK)
            sent += len(CHUNK)
        await agent.publish("io.agent.a.k.other", b"still here")
        await agent.flush()
        assert (await other.next_msg(timeout=10)).data == b"still here"
        await async_wait_for(lambda: unread.pending_bytes + len(CHUNK) >= RUN_PENDING_BYTES, timeout=10)
        assert unread.pending_bytes <= RUN_PENDING_BYTES
        assert gateway.is_connected and gateway.stats["reconnects"] == 0
    finally:
        await asyncio.gather(gateway.close(), agent.close())
