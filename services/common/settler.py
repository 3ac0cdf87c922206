"""How a durable consumer settles what it was given: ack, retry, or dead letter.

* handled → ack;
* ``PermanentError``, or a msgspec decode/validation error → ``dlq.<durable>`` with the
  reason, subject, delivery count, consumer and time (``bus.dead_letter``), then term;
* PostgreSQL, NATS or Docker away (``services.common.transient``) → tried again in place, in
  order, with backoff and without limit; its ack deadline pushed back (``in_progress``), its
  delivery count untouched; never acked or dead-lettered because of it; left unsettled once the
  consumer's connection is closed for good (``bus.closed_for_good``: no retry can succeed; the
  consumer then ends, ``pull_batches.park_when_closed``);
* any other error → nak with backoff, and dead-lettered after ``max_deliver`` tries;
* still being handled → its ack deadline pushed back every ``KEEP_ALIVE`` seconds, so that a
  slow attempt is not redelivered (and handled twice) meanwhile;
* delivered ``SETTLE_SLACK`` times more than ``max_deliver`` without ever being settled (the
  consumer died each time it handled it) → dead-lettered before it is handled again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.common import transient
from services.common.bus import closed_for_good, dead_letter
from services.common.js_reply import delivery_of
from services.common.transient import OUTAGES, unavailable_dependency
from services.common.waiting import first_of

__all__ = ["ACK_WAIT", "Attempt", "KEEP_ALIVE", "PermanentError", "SETTLE_SLACK", "Settler", "in_progress"]

log = logging.getLogger(__name__)

ACK_WAIT = 30
"""Seconds the server waits for a message to be settled before delivering it again."""
KEEP_ALIVE = ACK_WAIT / 3
"""Seconds between two ``in_progress`` of messages still being handled."""
SETTLE_SLACK = 20
"""Deliveries beyond ``max_deliver`` that a message may get without being settled (the consumer
restarted while handling it) before it is dead-lettered as one that kills its consumer."""


class PermanentError(Exception):
    """Raised by a handler when a message can never be processed (it goes to the dead letters)."""


Attempt = Callable[[list[Msg]], Awaitable[Sequence[BaseException | None]]]
"""Handles messages; returns, per message and in order, None or the error it raised."""


class Settler:
    """Settles each message after an attempt: acks a handled one; dead-letters a permanent
    failure; naks any other with backoff and dead-letters it after the last try. A message
    that failed because PostgreSQL, NATS or Docker is away (``transient``) is neither: it is
    tried again, in place and in order, until the dependency is back (or the consumer stops),
    its ack deadline pushed back meanwhile (``in_progress``), its delivery count untouched."""

    def __init__(self, js: JetStreamContext, durable: str, max_deliver: int, backoff: Sequence[float],
                 stop: asyncio.Event) -> None:
        self._js = js
        self._durable = durable
        self._max_deliver = max_deliver
        self._backoff = backoff
        self._stop = stop

    async def run(self, messages: list[Msg], attempt: Attempt) -> None:
        """Attempts ``messages`` and settles each, retrying those a dependency outage failed."""
        pending = [msg for msg in messages if not await self._unsettled_too_often(msg)]
        tries = 0
        while pending:
            outcomes = await _kept_alive(pending, attempt)
            waiting: list[Msg] = []
            dependency = failure = None
            for msg, error in zip(pending, outcomes, strict=True):
                away = unavailable_dependency(error)
                if away is None:
                    await self._settle(msg, error)
                else:
                    waiting.append(msg)
                    dependency, failure = away, error
            if not waiting:
                break
            tries += 1
            OUTAGES.failed(self._durable, dependency or "", failure or Exception())
            for msg in waiting:
                await in_progress(msg)
            await first_of(self._stop, timeout=transient.backoff(tries))
            if self._stop.is_set() or closed_for_good(self._js):
                OUTAGES.forget(self._durable)
                return  # unsettled: redelivered after the ack deadline (closed for good: the consumer ends)
            pending = waiting
        if tries:
            OUTAGES.recovered(self._durable)

    async def _unsettled_too_often(self, msg: Msg) -> bool:
        """Dead-letters a message delivered many times more than its tries without ever being
        settled (the consumer died handling it each time); True when it did."""
        delivered = delivery_of(msg).num_delivered
        if delivered <= self._max_deliver + SETTLE_SLACK:
            return False
        await self._dead_letter(msg, f"delivered {delivered} times without being settled "
                                     "(the consumer stopped or died while handling it)")
        return True

    async def _settle(self, msg: Msg, error: BaseException | None) -> None:
        if error is None:
            await msg.ack()
        elif isinstance(error, (PermanentError, msgspec.DecodeError, msgspec.ValidationError)):
            await self._dead_letter(msg, f"{type(error).__name__}: {error}")
        else:
            delivered = msg.metadata.num_delivered
            if delivered >= self._max_deliver:
                await self._dead_letter(msg, f"{type(error).__name__}: {error} (after {delivered} tries)")
            else:
                log.warning("%s: %s on %s; retry %d/%d", self._durable, error, msg.subject, delivered, self._max_deliver)
                await msg.nak(delay=self._backoff[min(delivered - 1, len(self._backoff) - 1)])

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        await dead_letter(self._js, self._durable, msg.subject, msg.data, reason, deliveries=msg.metadata.num_delivered)
        await msg.term()


async def _kept_alive(messages: list[Msg], attempt: Attempt) -> Sequence[BaseException | None]:
    """Returns ``attempt(messages)``, pushing back their ack deadline every ``KEEP_ALIVE`` seconds
    meanwhile: an attempt may take long (the event store's own retries while PostgreSQL is away
    last about a minute), and a message redelivered while it is still being handled would be
    handled twice."""
    task = asyncio.ensure_future(attempt(messages))
    try:
        while True:
            done, _ = await asyncio.wait([task], timeout=KEEP_ALIVE)
            if done:
                return task.result()
            for msg in messages:
                await in_progress(msg)
    finally:
        task.cancel()


async def in_progress(msg: Msg) -> None:
    """Pushes back the ack deadline of a message still held (being retried, or waiting for its turn);
    NATS itself may be the dependency that is away, so a failure only means it may be redelivered."""
    try:
        await msg.in_progress()
    except Exception as exc:  # noqa: BLE001 - best effort, see above
        log.debug("in_progress for %s failed: %s", msg.subject, exc)
