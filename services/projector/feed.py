"""The EVENTS stream as batches, from a given sequence: an ordered (ephemeral, unacknowledged)
push consumer whose messages queue up until the projector takes them.

Nothing about the consumer is durable: PostgreSQL holds the position, and a new feed
starts after it. The bounded queue gives back-pressure: when it is full, flow control
stops the server from pushing more.

Hand-written on nats-py, not on faststream like the services' flows
(``services/common/flow.py``): this is the projector's hot path (every event of the
platform, in batches of thousands), and faststream's per-message dispatch (parser,
middlewares, context) costs about four times the raw callback here (≈80 µs against ≈20 µs
per event, measured on the ordered follow), which would make the projector the pipeline's
bottleneck. It takes every event (``EVENTS_SUBJECTS``), so there is no table to derive.
"""

from __future__ import annotations

import asyncio
import logging

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts.subjects import EVENTS_STREAM, EVENTS_SUBJECTS
from services.common.bus_closed import check_open

__all__ = ["EventFeed"]

HEARTBEAT = 1.0
"""Seconds between the server's idle heartbeats: two missed ones make nats-py start the consumer
again where it was (after a NATS restart: ≈2 s, against ≈17 s with its default of 5 s)."""

log = logging.getLogger(__name__)


class EventFeed:
    """Delivers EVENTS messages from ``start_seq`` on, in order, in batches."""

    def __init__(self, js: JetStreamContext, start_seq: int, capacity: int = 5000) -> None:
        """Prepares a feed; ``start`` subscribes."""
        self._js = js
        self._start_seq = max(start_seq, 1)
        self._queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=capacity)
        self._sub: JetStreamContext.PushSubscription | None = None

    async def start(self) -> None:
        """Creates the ordered consumer and starts receiving."""
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self._start_seq)
        self._sub = await self._js.subscribe(
            EVENTS_SUBJECTS[0],
            stream=EVENTS_STREAM,
            cb=self._receive,
            ordered_consumer=True,
            idle_heartbeat=HEARTBEAT,
            config=config,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        )

    async def next_batch(self, max_size: int, wait: float) -> list[Msg]:
        """Returns the messages queued so far (at most ``max_size``), waiting up to ``wait``
        seconds for the first one; [] when none came. Raises ``bus_closed.BusClosedError`` when none came
        and the connection is closed for good: nats-py then delivers nothing more, and says nothing (the
        projector waited for ever, its process never started again)."""
        try:
            async with asyncio.timeout(wait):
                first = await self._queue.get()
        except asyncio.TimeoutError:
            check_open(self._js, "projector feed")
            return []
        batch = [first]
        while len(batch) < max_size:
            try:
                batch.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return batch

    async def stop(self) -> None:
        """Unsubscribes (the server then drops the ephemeral consumer)."""
        if self._sub is not None:
            sub, self._sub = self._sub, None
            try:
                await sub.unsubscribe()
            except Exception as exc:  # noqa: BLE001 - closing a feed must not hide the error that ended it
                log.debug("unsubscribing the feed failed: %s", exc)

    async def _receive(self, msg: Msg) -> None:
        await self._queue.put(msg)
