"""A durable JetStream consumer loop: explicit ack, bounded redelivery with backoff, dead letters.

A handler that raises ``PermanentError`` (or a msgspec decode error) sends the
message straight to ``dlq.<durable>``; any other error is retried with backoff and
dead-lettered after the last try. The loop itself never stops on a bad message.
A *batch* handler gets every message of one fetch at once (to apply them in one
transaction, say) and returns one outcome per message, settled the same way.
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

__all__ = ["BatchHandler", "PermanentError", "consume"]

log = logging.getLogger(__name__)

Handler = Callable[[Msg], Awaitable[None]]
BatchHandler = Callable[[list[Msg]], Awaitable[list[BaseException | None]]]
"""Returns, per message and in order, None when handled or the error it raised."""
BACKOFF = (0.1, 0.5, 2.0, 5.0)


class PermanentError(Exception):
    """Raised by a handler when a message can never be processed (it goes to the dead letters)."""


async def consume(
    js: JetStreamContext,
    *,
    durable: str,
    subject: str,
    handler: Handler | None = None,
    stop: asyncio.Event,
    batch_handler: BatchHandler | None = None,
    stream: str | None = None,
    max_deliver: int = 5,
    backoff: Sequence[float] = BACKOFF,
    batch: int = 64,
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
) -> None:
    """Runs ``handler`` on each message of ``subject`` (or ``batch_handler`` on each fetch) until
    ``stop`` is set."""
    if (handler is None) == (batch_handler is None):
        raise ValueError("give exactly one of handler and batch_handler")
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
            if batch_handler is not None:
                outcomes = await batch_handler(messages)
            else:
                outcomes = [await _outcome(handler, msg) for msg in messages]  # type: ignore[arg-type]
            for msg, error in zip(messages, outcomes, strict=True):
                await _settle(js, durable, msg, error, max_deliver, backoff)
    finally:
        await sub.unsubscribe()


async def _outcome(handler: Handler, msg: Msg) -> BaseException | None:
    try:
        await handler(msg)
    except Exception as exc:  # noqa: BLE001 - settled by _settle
        return exc
    return None


async def _settle(
    js: JetStreamContext, durable: str, msg: Msg, error: BaseException | None, max_deliver: int, backoff: Sequence[float]
) -> None:
    """Acks a handled message; dead-letters a permanent failure; retries any other with backoff,
    and dead-letters it after the last try."""
    if error is None:
        await msg.ack()
    elif isinstance(error, (PermanentError, msgspec.DecodeError, msgspec.ValidationError)):
        await dead_letter(js, durable, msg.subject, msg.data, f"{type(error).__name__}: {error}")
        await msg.term()
    else:
        delivered = msg.metadata.num_delivered
        if delivered >= max_deliver:
            await dead_letter(js, durable, msg.subject, msg.data, f"{type(error).__name__}: {error} (after {delivered} tries)")
            await msg.term()
        else:
            log.warning("%s: %s on %s; retry %d/%d", durable, error, msg.subject, delivered, max_deliver)
            await msg.nak(delay=backoff[min(delivered - 1, len(backoff) - 1)])
