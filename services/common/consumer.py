"""A durable JetStream consumer loop: explicit ack, bounded redelivery with backoff, dead letters.

A handler that raises ``PermanentError`` (or a msgspec decode error) sends the
message straight to ``dlq.<durable>``; any other error is retried with backoff and
dead-lettered after the last try. The loop itself never stops on a bad message.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Sequence

import msgspec
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.common.bus import dead_letter

__all__ = ["PermanentError", "consume"]

log = logging.getLogger(__name__)

Handler = Callable[[Msg], Awaitable[None]]
BACKOFF = (0.1, 0.5, 2.0, 5.0)


class PermanentError(Exception):
    """Raised by a handler when a message can never be processed (it goes to the dead letters)."""


async def consume(
    js: JetStreamContext,
    *,
    durable: str,
    subject: str,
    handler: Handler,
    stop: asyncio.Event,
    stream: str | None = None,
    max_deliver: int = 5,
    backoff: Sequence[float] = BACKOFF,
    batch: int = 64,
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
) -> None:
    """Runs ``handler`` on each message of ``subject`` until ``stop`` is set."""
    config = ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        max_deliver=max_deliver + 1,
        ack_wait=30,
        deliver_policy=deliver_policy,
        filter_subject=subject,
    )
    sub = await js.pull_subscribe(subject, durable=durable, stream=stream, config=config)
    try:
        while not stop.is_set():
            try:
                messages = await sub.fetch(batch, timeout=0.5)
            except (NatsTimeoutError, asyncio.TimeoutError):
                continue
            for msg in messages:
                await _process(js, durable, msg, handler, max_deliver, backoff)
    finally:
        await sub.unsubscribe()


async def _process(
    js: JetStreamContext, durable: str, msg: Msg, handler: Handler, max_deliver: int, backoff: Sequence[float]
) -> None:
    try:
        await handler(msg)
    except (PermanentError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        await dead_letter(js, durable, msg.subject, msg.data, f"{type(exc).__name__}: {exc}")
        await msg.term()
        return
    except Exception as exc:  # noqa: BLE001 - any failure is retried, then dead-lettered
        delivered = msg.metadata.num_delivered
        if delivered >= max_deliver:
            await dead_letter(js, durable, msg.subject, msg.data, f"{type(exc).__name__}: {exc} (after {delivered} tries)")
            await msg.term()
        else:
            log.warning("%s: %s on %s; retry %d/%d", durable, exc, msg.subject, delivered, max_deliver)
            await msg.nak(delay=backoff[min(delivered - 1, len(backoff) - 1)])
        return
    await msg.ack()
