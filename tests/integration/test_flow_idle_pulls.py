"""An idle batched durable consumer (the controller's reports) long-polls for its first message as long as a
one-message consumer does (``flow.FETCH_WAIT``): since a batch is handed over as soon as its first message is
there (``pull_batches.hand_over_available``) the wait adds no latency, and the 0.1 s it was made an idle
controller send 20 empty pulls a second (~7 ms of its CPU and ~4 ms of nats-server's per second)."""

from __future__ import annotations

from typing import Any

from nats.js import JetStreamContext
from nats.js.client import JetStreamContext as Js

from contracts import agent as ev
from contracts.subjects import EVENTS_STREAM
from services.common import flow
from services.common.flow import Subscription
from tests.integration.test_flow import Recorder, assigned, publish, running
from tests.support.waiting import async_wait_for


async def test_an_idle_batched_consumer_long_polls_as_long_as_a_single_one(
    nats_url: str, js: JetStreamContext, monkeypatch: Any
) -> None:
    waits: list[float] = []
    fetch = Js.PullSubscription.fetch

    async def recorded(self: Any, batch: int = 1, timeout: float | None = 5, **kwargs: Any) -> Any:
        if batch == 1:
            waits.append(timeout)  # type: ignore[arg-type]
        return await fetch(self, batch, timeout, **kwargs)

    monkeypatch.setattr(Js.PullSubscription, "fetch", recorded)
    target = Recorder()
    batched = Subscription(name="flowidle-{agent_id}", stream=EVENTS_STREAM, durable=True, aggregate="{agent_id}",
                           routes={ev.KernelAssigned: Recorder.batch}, batch=16)
    async with running(nats_url, js, batched, target):
        await publish(js, [assigned("a1", 1, "ok-1")])
        await async_wait_for(lambda: target.handled == ["ok-1"] and len(waits) >= 2, timeout=10,
                             message=f"handled {target.handled}, first-message pulls {waits}")
    assert waits and all(wait > 0.9 * flow.FETCH_WAIT for wait in waits), waits  # its time left, just under it
