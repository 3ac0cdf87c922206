"""An ordered follow of a subscription (``flow.follow``): nats-py's ordered consumer replaying a stream from its
first message (or a checkpoint's), for the in-memory views rebuilt at every start. An event whose handler fails is
followed again, it and everything after it, never skipped (``Following``)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts.catalog import decode_event
from services.common import transient
from services.common.js_reply import delivery_of
from services.common.transient import NATS, OUTAGES, unavailable_dependency

if TYPE_CHECKING:
    from services.common.subscription import Subscription

__all__ = ["FOLLOW_HEARTBEAT", "Following"]

log = logging.getLogger(__name__)

FOLLOW_HEARTBEAT = 1.0
"""Seconds between the server's idle heartbeats to an ordered follow: two missed ones make
nats-py start the consumer again where it was (after a NATS restart, say: ≈2 s instead of ≈17 s
with its default of 5 s; measured in tests/integration/test_flow_nats_restart.py)."""


class Following:
    """A running ordered follow of one subscription; ``await following.stop()`` ends it.

    An event whose handler fails is never skipped: the ordered consumer is dropped, and after a backoff a new
    one starts at that event's stream sequence, so the view gets the event again and everything after it in
    order (a handler that failed half-way must therefore tolerate being called again with the same event).
    Until then the failure is in ``OUTAGES`` (the health answer) and logged. Only an event this version cannot
    decode is logged as an error and passed over: no retry can decode it. A ``named`` subscription's consumer
    is created under its name with its one filter (its identity may create no other) and deleted when the
    follow stops or starts again (it would otherwise outlive it for the server's inactivity threshold)."""

    def __init__(self, js: JetStreamContext, subscription: Subscription, target: Any, caught_up: asyncio.Event,
                 ids: Mapping[str, str]) -> None:
        self._js = js
        self._subscription = subscription
        self._target = target
        self._caught_up = caught_up
        self._filters = list(subscription.filters(**ids))
        self._name = subscription.consumer_name(**ids)
        self._named = self._name if subscription.named else None
        self._sub: JetStreamContext.PushSubscription | None = None
        self._resyncing = False
        """True from a failed event until the follow starts again at it (deliveries ignored)."""
        self._restarting: asyncio.Task[None] | None = None
        self._stopped = False
        self._tries = 0
        self.resyncs = 0
        """How many times the follow started again at an event that had failed (tests, logs)."""
        self.position = self.delivered = 0
        """The stream sequence of the last message handled or passed over (what a checkpoint reflects); messages received."""

    async def start(self, start_seq: int | None = None) -> None:
        """Subscribes from the first event (or ``start_seq``) of the stream."""
        self.position = self.position or (start_seq or 1) - 1
        policy = {"deliver_policy": DeliverPolicy.ALL if start_seq is None else DeliverPolicy.BY_START_SEQUENCE}
        config = (ConsumerConfig(name=self._named, filter_subject=self._filters[0], opt_start_seq=start_seq, **policy)
                  if self._named else ConsumerConfig(filter_subjects=self._filters, opt_start_seq=start_seq, **policy))
        self._sub = await self._js.subscribe(self._filters[0], stream=self._subscription.stream, cb=self._deliver,
                                             ordered_consumer=True, idle_heartbeat=FOLLOW_HEARTBEAT, config=config,
                                             **policy)
        info = await self._sub.consumer_info()
        if info.num_pending == 0 and info.delivered.consumer_seq == 0:  # nothing to catch up on
            self._caught_up.set()

    async def stop(self) -> None:
        self._stopped = True
        OUTAGES.forget(self._name)
        if self._restarting is not None:
            self._restarting.cancel()
            await asyncio.gather(self._restarting, return_exceptions=True)
        if self._sub is not None:
            with contextlib.suppress(nats.errors.ConnectionClosedError):  # closed for good: nothing to unsubscribe
                await self._sub.unsubscribe()
            self._sub = None
        await self._delete_named()

    async def _delete_named(self) -> None:
        if self._named is not None:  # gone already, or NATS unreachable: the server expires it when inactive
            with contextlib.suppress(nats.errors.Error):
                await self._js.delete_consumer(self._subscription.stream, self._named)

    async def _deliver(self, msg: Msg) -> None:
        if self._resyncing or self._stopped:
            return  # still queued by the subscription being dropped: delivered again after the resync
        self.delivered += 1
        delivery = delivery_of(msg)
        try:
            event = decode_event(msg.data)
            handler = self._subscription.routes.get(type(event))
            if handler is not None:
                result = handler(self._target, event)
                if inspect.isawaitable(result):
                    await result
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("%s: passing over an event this version cannot decode at stream sequence %d (%s): %s",
                      self._name, delivery.stream_seq, msg.subject, exc)
        except Exception as exc:  # noqa: BLE001 - retried from this event on, never skipped
            self._failed(msg, exc)
            return
        self.position = delivery.stream_seq
        if self._tries:
            self._tries = 0
            OUTAGES.recovered(self._name)
        if delivery.num_pending == 0:
            self._caught_up.set()

    def _failed(self, msg: Msg, error: Exception) -> None:
        self._tries += 1
        seq = msg.metadata.sequence.stream
        if self._tries == 1 and unavailable_dependency(error) is None:
            log.error("%s: applying the event at stream sequence %d (%s) failed; following again from it",
                      self._name, seq, msg.subject, exc_info=error)
        OUTAGES.failed(self._name, unavailable_dependency(error) or f"its event at stream sequence {seq}", error)
        self._resyncing = True
        self._restarting = asyncio.create_task(self._restart(seq), name=f"resync-{self._name}")

    async def _restart(self, seq: int) -> None:
        await asyncio.sleep(transient.backoff(self._tries))
        while not self._stopped:
            try:
                if self._sub is not None:
                    sub, self._sub = self._sub, None
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
                await self._delete_named()
                self._resyncing = False
                self.resyncs += 1
                await self.start(seq)
                return
            except Exception as exc:  # noqa: BLE001 - NATS away: try again
                self._resyncing = True
                self._tries += 1
                OUTAGES.failed(self._name, unavailable_dependency(exc) or NATS, exc)
                await asyncio.sleep(transient.backoff(self._tries))
