"""services.common.flow on a real NATS server: a durable consumer acks what its handlers took, retries
what failed for a while with backoff, dead-letters what can never be processed (with its error and
subject) and never stops on a bad message; a batch handler settles each message by its own outcome;
an ordered follow replays the history and says when it caught up. (Outages and failing follows:
test_flow_outages.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from nats.js import JetStreamContext

from contracts import agent as ev
from contracts.catalog import decode_event, encode_event
from contracts.envelope import Event, Metadata
from contracts.subjects import EVENTS_STREAM, HEADER_ERROR, HEADER_ORIGINAL_SUBJECT, event_subject
from domain.emitting import Context, Emitter
from services.common import flow, pull_batches
from services.common.flow import Following, PermanentError, Subscription, consume, follow, open_broker
from services.gateway.deadletters import queue as deadletter_queue
from tests.support.waiting import async_wait_for

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def assigned(agent_id: str, version: int, kernel: str) -> Event:
    ctx = Context(now=NOW, metadata=Metadata(actor="test", correlation_id="c"))
    return Emitter(agent_id, version - 1, ctx)(ev.KernelAssigned, kernel_id=kernel, session_id=f"s-{kernel}",
                                               image="img", slots={"cpu": Decimal(1)})


async def publish(js: JetStreamContext, events: list[Event]) -> None:
    for event in events:
        await js.publish(event_subject(event.type_name(), event.originator_id), encode_event(event),
                         stream=EVENTS_STREAM)


class Recorder:
    """A handler target: fails kernels named ``bad-*`` for ever (PermanentError), ``flaky-*`` on their first
    delivery, ``down-*`` on every delivery (a transient error that never ends)."""

    def __init__(self) -> None:
        self.handled: list[str] = []
        self.attempts: dict[str, int] = {}

    async def handle(self, event: Event, *, last_attempt: bool = False) -> None:
        kernel = event.kernel_id  # type: ignore[attr-defined]
        self.attempts[kernel] = self.attempts.get(kernel, 0) + 1
        if kernel.startswith("bad-"):
            raise PermanentError("never")
        if kernel.startswith("flaky-") and self.attempts[kernel] == 1:
            raise ConnectionError("briefly away")
        if kernel.startswith("down-"):
            raise ConnectionError("still away")
        self.handled.append(kernel)

    async def batch(self, messages: list[Any]) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = []
        for msg in messages:
            kernel = decode_event(msg.data).kernel_id  # type: ignore[attr-defined]
            outcomes.append(PermanentError("refused") if kernel.startswith("bad-") else None)
            if outcomes[-1] is None:
                self.handled.append(kernel)
        return outcomes


def table(**kw: Any) -> Subscription:
    routes = {ev.KernelAssigned: (Recorder.batch if kw.get("batch", 1) > 1 else Recorder.handle)}
    return Subscription(name="flowtest-{agent_id}", stream=EVENTS_STREAM, durable=True, aggregate="{agent_id}",
                        routes=routes, backoff=(0.05,), **kw)


async def dead_letters(js: JetStreamContext, consumer: str) -> list[Any]:
    """Returns the consumer's dead letters, whatever their sender (``dlq.<consumer>`` and ``dlq.<consumer>.<agent>``)."""
    return await deadletter_queue.entries(js, consumer, limit=100)


@contextlib.asynccontextmanager
async def running(nats_url: str, js: JetStreamContext, sub: Subscription, target: Recorder) -> AsyncIterator[None]:
    broker = open_broker(nats_url, "flow-test")
    await broker.connect()
    stop = asyncio.Event()
    task = asyncio.create_task(consume(broker, js, sub, target, stop, agent_id="a1"))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await broker.stop()


async def test_a_durable_consumer_acks_retries_and_dead_letters(nats_url: str, js: JetStreamContext) -> None:
    target = Recorder()
    await publish(js, [assigned("a1", 1, "ok-1"), assigned("a1", 2, "bad-1"), assigned("a1", 3, "flaky-1"),
                       assigned("a1", 4, "down-1"), assigned("a1", 5, "ok-2"), assigned("other", 1, "not-mine")])
    async with running(nats_url, js, table(max_deliver=3), target):
        await async_wait_for(lambda: {"ok-1", "flaky-1", "ok-2"} <= set(target.handled) and
                             target.attempts.get("down-1") == 3, timeout=30, message=f"handled {target.handled}")
        letters = await async_wait_for_letters(js, "flowtest-a1", 2)
    assert "not-mine" not in target.attempts, "the filter is the agent's own aggregate"
    assert target.attempts["bad-1"] == 1, "a permanent error is not retried"
    assert target.attempts["flaky-1"] == 2, "a transient one is, and then handled"
    by_kernel = {decode_event(m.data).kernel_id: m for m in letters}  # type: ignore[attr-defined]
    assert set(by_kernel) == {"bad-1", "down-1"}
    assert "PermanentError: never" in by_kernel["bad-1"].headers[HEADER_ERROR]
    assert "(after 3 tries)" in by_kernel["down-1"].headers[HEADER_ERROR]
    assert by_kernel["bad-1"].headers[HEADER_ORIGINAL_SUBJECT] == event_subject("agent.kernel_assigned", "a1")


async def async_wait_for_letters(js: JetStreamContext, consumer: str, count: int) -> list[Any]:
    found: list[Any] = []

    async def enough() -> bool:
        found[:] = await dead_letters(js, consumer)
        return len(found) >= count

    await async_wait_for(enough, timeout=30, message=f"{count} dead letters of {consumer}")
    return found


async def test_a_batch_handler_settles_each_message_by_its_outcome(nats_url: str, js: JetStreamContext) -> None:
    target = Recorder()
    await publish(js, [assigned("a1", v, f"{'bad' if v == 2 else 'ok'}-{v}") for v in range(1, 6)])
    async with running(nats_url, js, table(batch=16), target):
        await async_wait_for(lambda: len(target.handled) == 4, timeout=30, message=f"handled {target.handled}")
        letters = await async_wait_for_letters(js, "flowtest-a1", 1)
    assert [decode_event(m.data).kernel_id for m in letters] == ["bad-2"]  # type: ignore[attr-defined]
    assert sorted(target.handled) == ["ok-1", "ok-3", "ok-4", "ok-5"]


class BatchRecorder(Recorder):
    """Also records the size of every batch handed over."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    async def batch(self, messages: list[Any]) -> list[BaseException | None]:
        self.sizes.append(len(messages))
        return await super().batch(messages)


async def test_a_batched_consumer_hands_over_what_is_there_without_waiting_to_fill(
    nats_url: str, js: JetStreamContext, monkeypatch: Any
) -> None:
    """A lone message reaches the batch handler at once, not after the batch wait (set far beyond the
    deadlines here); messages that queued up meanwhile still go together."""
    monkeypatch.setattr(flow, "BATCH_WAIT", 20.0)
    target = BatchRecorder()
    await publish(js, [assigned("a1", v, f"ok-{v}") for v in range(1, 11)])
    batched = Subscription(name="flowtest-{agent_id}", stream=EVENTS_STREAM, durable=True, aggregate="{agent_id}",
                           routes={ev.KernelAssigned: BatchRecorder.batch}, batch=16)
    async with running(nats_url, js, batched, target):
        await async_wait_for(lambda: len(target.handled) == 10, timeout=8, message=f"handled {target.handled}")
        assert max(target.sizes) > 1, f"queued messages go together: {target.sizes}"
        for v in (11, 12):  # one at a time, while the consumer waits
            await publish(js, [assigned("a1", v, f"ok-{v}")])
            await async_wait_for(lambda: f"ok-{v}" in target.handled, timeout=8,  # noqa: B023 - waited here
                                 message=f"a lone message waited for the batch to fill: {target.handled}")
    assert sorted(target.handled) == sorted(f"ok-{v}" for v in range(1, 13))


async def test_a_restarted_durable_consumer_resumes_where_it_stopped(nats_url: str, js: JetStreamContext) -> None:
    first, second = Recorder(), Recorder()
    await publish(js, [assigned("a1", 1, "ok-1")])
    async with running(nats_url, js, table(), first):
        await async_wait_for(lambda: first.handled == ["ok-1"], timeout=30, message="first delivery")
    await publish(js, [assigned("a1", 2, "ok-2")])
    async with running(nats_url, js, table(), second):
        await async_wait_for(lambda: second.handled == ["ok-2"], timeout=30, message=f"resumed: {second.handled}")


async def test_a_follow_replays_the_history_then_follows_live_events(nats_url: str, js: JetStreamContext) -> None:
    """(A failing handler: tests/integration/test_flow_outages.py.)"""
    seen: list[str] = []

    def apply(target: list[str], event: Event) -> None:
        target.append(event.kernel_id)  # type: ignore[attr-defined]

    await publish(js, [assigned("a1", 1, "ok-1"), assigned("a1", 2, "ok-2"), assigned("a1", 3, "ok-3")])
    view = Subscription(name="flowtest-view", stream=EVENTS_STREAM, routes={ev.KernelAssigned: apply})
    async with following(js, view, seen) as (_, caught_up):
        await asyncio.wait_for(caught_up.wait(), 30)
        assert seen == ["ok-1", "ok-2", "ok-3"]
        await publish(js, [assigned("a1", 4, "ok-4")])
        await async_wait_for(lambda: seen[-1:] == ["ok-4"], timeout=30, message=f"live events: {seen}")


async def test_a_follow_of_an_empty_history_is_caught_up_at_once(nats_url: str, js: JetStreamContext) -> None:
    view = Subscription(name="flowtest-empty", stream=EVENTS_STREAM, routes={ev.KernelAssigned: lambda t, e: None})
    async with following(js, view, None) as (_, caught_up):
        await asyncio.wait_for(caught_up.wait(), 30)


@contextlib.asynccontextmanager
async def following(js: JetStreamContext, view: Subscription, target: Any) -> AsyncIterator[tuple[Following, asyncio.Event]]:
    """Yields a running follow of ``view`` into ``target`` and its "caught up" event; stopped after."""
    caught_up = asyncio.Event()
    running_follow = await follow(js, view, target, caught_up)
    try:
        yield running_follow, caught_up
    finally:
        await running_follow.stop()


async def test_a_batched_consumer_asks_for_no_more_than_the_consumer_holds(
    nats_url: str, js: JetStreamContext, monkeypatch: Any
) -> None:
    """After the first message of a round, a batched consumer asks for exactly the messages the
    consumer still holds (its metadata's count), so no request lingers for its expiry: neither a
    lone message nor a queue shorter than the batch waits ``AVAILABLE_WAIT`` (set far beyond the
    deadlines here) before its handler sees it."""
    monkeypatch.setattr(pull_batches, "AVAILABLE_WAIT", 20.0)
    target = BatchRecorder()
    await publish(js, [assigned("a1", v, f"ok-{v}") for v in range(1, 6)])
    batched = Subscription(name="flowtest-{agent_id}", stream=EVENTS_STREAM, durable=True, aggregate="{agent_id}",
                           routes={ev.KernelAssigned: BatchRecorder.batch}, batch=16)
    async with running(nats_url, js, batched, target):
        await async_wait_for(lambda: len(target.handled) == 5, timeout=8,
                             message=f"a queue shorter than the batch waited for more: {target.handled}")
        assert max(target.sizes) > 1, f"queued messages go together: {target.sizes}"
        for v in (6, 7):  # one at a time, while the consumer waits
            await publish(js, [assigned("a1", v, f"ok-{v}")])
            await async_wait_for(lambda: f"ok-{v}" in target.handled, timeout=8,  # noqa: B023 - waited here
                                 message=f"a lone message waited for more: {target.handled}")
    assert sorted(target.handled) == sorted(f"ok-{v}" for v in range(1, 8))
