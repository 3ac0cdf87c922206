"""A durable consumer whose NATS connection is closed for good ends its process with an error, on a real NATS
server: the server closes the connection (a message over ``max_payload`` with its headers: nats-py checks only
the payload), and the consumer, in a process of its own (``python -m`` this module), raises ``BusClosedError``
instead of spinning in faststream's pull loop (which caught nats-py's ``ConnectionClosedError`` and fetched
again at once, starving every other task, the process never ending). Whether the closure is met when a message
is settled (an ack) or by a handler that reaches NATS (retried in place while NATS is away, but not once its
connection is closed for good)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from contracts import agent as ev
from contracts.envelope import Event
from contracts.subjects import EVENTS_STREAM
from services.common.bus_closed import BusClosedError, stop_broker
from services.common.flow import Subscription, consume, open_broker
from tests.integration.test_flow import assigned, publish

EXIT_WITHIN = 60.0
"""Seconds the consumer's process has to end once its connection is closed (a busy machine; it takes one)."""


class Closer:
    """A handler target that gets its connection closed by the server at the first message; with ``reach``, it
    then reaches NATS itself (a handler publishing), which fails."""

    def __init__(self, nc: Client, reach: bool) -> None:
        self._nc = nc
        self._reach = reach

    async def handle(self, event: Event, *, last_attempt: bool = False) -> None:
        await self._close()
        if self._reach:
            await self._nc.jetstream().publish("closedbus.after", b"x")

    async def batch(self, messages: list[Any]) -> list[BaseException | None]:
        await self.handle(None)  # type: ignore[arg-type]
        return [None] * len(messages)

    async def _close(self) -> None:
        if not self._nc.is_closed:  # over max_payload with its headers: the server closes the connection for good
            await self._nc.publish("closedbus.pad", b"x" * (self._nc.max_payload - 16), headers={"Pad": "p" * 256})
        deadline = time.monotonic() + 30
        while not self._nc.is_closed and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert self._nc.is_closed, "the server closed the connection"


def table(batch: int) -> Subscription:
    return Subscription(name="closedbus-{agent_id}", stream=EVENTS_STREAM, durable=True, aggregate="{agent_id}",
                        routes={ev.KernelAssigned: Closer.batch if batch > 1 else Closer.handle}, batch=batch,
                        backoff=(0.05,))


async def consume_until_closed(url: str, batch: int, reach: bool) -> None:
    """The child process: consumes on a connection of its own until ``consume`` raises."""
    broker = open_broker(url, "closed-bus-test")
    nc = await broker.connect()
    await broker.start()
    await consume(broker, nc.jetstream(), table(batch), Closer(nc, reach), asyncio.Event(), agent_id="a1")


@pytest.mark.parametrize(("batch", "reach"), [(1, False), (4, False), (1, True), (4, True)],
                         ids=["ack", "batch-ack", "handler", "batch-handler"])
async def test_a_consumer_whose_connection_is_closed_for_good_ends_its_process(
        nats_url: str, js: JetStreamContext, batch: int, reach: bool) -> None:
    await publish(js, [assigned("a1", 1, "k-1"), assigned("a1", 2, "k-2")])
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.test_consumer_closed_bus", nats_url, str(batch), str(int(reach)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(os.environ))
    try:
        _, stderr = await asyncio.wait_for(child.communicate(), EXIT_WITHIN)
    except TimeoutError:
        child.kill()
        await child.wait()
        pytest.fail(f"the consumer's process did not end within {EXIT_WITHIN} s of its connection's closure")
    assert child.returncode != 0
    assert b"BusClosedError" in stderr and b"closed for good" in stderr, stderr.decode(errors="replace")[-3000:]


async def test_a_consumer_whose_connection_is_closed_as_it_starts_ends_with_bus_closed(nats_url: str) -> None:
    """Closed before its consumer is created or subscribed: the same ``BusClosedError`` as when closed while it
    pulls, not nats-py's ``ConnectionClosedError`` (a controller closed as it started ended so)."""
    broker = open_broker(nats_url, "closed-at-start-test")
    nc = await broker.connect()
    await broker.start()
    await nc.close()
    with pytest.raises(BusClosedError, match="closed for good"):
        await consume(broker, nc.jetstream(), table(1), object(), asyncio.Event(), agent_id="a1")
    await stop_broker(broker)


if __name__ == "__main__":
    asyncio.run(consume_until_closed(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"))
