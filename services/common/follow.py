"""Follows the EVENTS stream from its first message with an ordered consumer.

An ordered consumer is ephemeral and has no acks: for services (the scheduler, the
controller) that rebuild an in-memory view from the whole history at every start,
so they need no durable position.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Sequence

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts.catalog import decode_event
from contracts.envelope import Event
from contracts.subjects import EVENTS_STREAM

__all__ = ["follow"]

log = logging.getLogger(__name__)


async def follow(
    js: JetStreamContext,
    subjects: Sequence[str],
    on_event: Callable[[Event], None],
    caught_up: asyncio.Event,
) -> JetStreamContext.PushSubscription:
    """Calls ``on_event`` for each event of ``subjects``, oldest first, and sets ``caught_up`` once
    the history that existed at subscription time has been delivered. Returns the subscription."""

    async def deliver(msg: Msg) -> None:
        try:
            on_event(decode_event(msg.data))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("skipping an undecodable event on %s: %s", msg.subject, exc)
        except Exception:  # noqa: BLE001 - one bad event must not stop the view
            log.exception("failed to apply the event on %s", msg.subject)
        if msg.metadata.num_pending == 0:
            caught_up.set()

    config = ConsumerConfig(filter_subjects=list(subjects))
    sub = await js.subscribe(
        subjects[0],
        stream=EVENTS_STREAM,
        cb=deliver,
        ordered_consumer=True,
        config=config,
        deliver_policy=DeliverPolicy.ALL,
    )
    info = await sub.consumer_info()
    if info.num_pending == 0 and info.delivered.consumer_seq == 0:  # nothing to catch up on
        caught_up.set()
    return sub
