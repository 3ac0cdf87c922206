"""The pull loop's ``fetch``, mended (``mend_fetch``): a batched pull hands over what is there instead of
waiting to fill the batch (``hand_over_available``), every fetch timeout is nats-py's (``fetch_timeouts_as_nats``),
and a connection closed for good ends the consumer instead of spinning (``park_when_closed``: ``bus_closed``).

faststream's batched pull loop keeps fetching until it has ``batch_size`` messages or its
timeout ran out, and nats-py's ``fetch(batch=n)``, once a lingering request got its first
message, waits for the rest until the request expires. Either way a lone message (a kernel's
report while the platform is quiet) waited the whole timeout (``flow.BATCH_WAIT``) before its
handler saw it: on every hop of a session's start. ``hand_over_available`` makes each round
wait for its FIRST message only (a lingering ``fetch(batch=1)``, answered as soon as one is
there), take at once what else is already available, and end the round; under load the batches
still fill from what queued up meanwhile.

What else is available is what the first message's metadata counts (``num_pending``: the
consumer's messages after it), so a lone message asks nothing more (a probe would cost a round
trip, and the server holds even a ``no_wait`` request with an expiry for that whole expiry), and
the rest is asked for exactly (up to the batch): a request the server can fill at once ends at
once. ``AVAILABLE_WAIT`` bounds it when another client took some of them meanwhile.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeoutError

from services.common.js_reply import delivery_of

__all__ = ["AVAILABLE_WAIT", "fetch_timeouts_as_nats", "hand_over_available", "mend_fetch", "park_when_closed"]

AVAILABLE_WAIT = 0.002
"""Seconds a round waits for the messages already available after its first one."""


def hand_over_available(subscription: Any) -> None:
    """Replaces ``subscription.fetch`` (nats-py's pull subscription, as faststream's batched loop
    calls it) with one that returns the first message and those already there, then makes the
    loop's next call of the same round end it (``nats.errors.TimeoutError``, which the loop takes
    as "hand over what you have"). A message fetched is always returned, never dropped."""
    fetch = subscription.fetch
    handed = False

    async def fetch_available(batch: int = 1, timeout: float | None = None, **kwargs: Any) -> list[Msg]:
        nonlocal handed
        if handed:  # the round already has what was there: end it
            handed = False
            raise NatsTimeoutError
        messages: list[Msg] = list(await fetch(batch=1, timeout=timeout, **kwargs))
        more = min(batch - 1, _pending_after(messages[-1])) if messages else 0
        if more > 0:
            try:
                messages += await fetch(batch=more, timeout=AVAILABLE_WAIT, **kwargs)
            except (NatsTimeoutError, asyncio.TimeoutError):
                pass  # taken by another client meanwhile
        handed = len(messages) < batch
        return messages

    subscription.fetch = fetch_available


def _pending_after(message: Msg) -> int:
    """Returns how many messages the consumer held after ``message`` when it was delivered."""
    try:
        return delivery_of(message).num_pending
    except Exception:  # noqa: BLE001 - not a JetStream message (no metadata): ask as before, for the batch
        return 1 << 30


def fetch_timeouts_as_nats(subscription: Any) -> None:
    """Makes ``subscription.fetch`` (nats-py's pull subscription, as faststream's loop calls it)
    raise ``nats.errors.TimeoutError`` for every timeout.

    Since nats-py 2.15 (nats.py#934) ``fetch`` raises a plain ``asyncio.TimeoutError`` when its
    deadline ran out between two requests (nats.py#1008, open); faststream's pull loop catches only
    ``nats.errors.TimeoutError``, so its task died, was restarted by faststream's task supervisor,
    and the partial batch it had fetched was dropped unacknowledged: redelivered only after
    ``ack_wait`` (30 s). Seen under load as reports and kernel assignments arriving 30 s late;
    ``tests/unit/test_flow_fetch.py`` holds its test."""
    fetch = subscription.fetch

    async def fetch_with_nats_timeouts(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fetch(*args, **kwargs)
        except NatsTimeoutError:
            raise
        except asyncio.TimeoutError as exc:
            raise NatsTimeoutError from exc

    subscription.fetch = fetch_with_nats_timeouts


def park_when_closed(subscription: Any, closed: asyncio.Event) -> None:
    """Makes ``subscription.fetch`` (as faststream's pull loop calls it), once the connection is closed for good
    (``ConnectionClosedError``: nats-py raises it only then), set ``closed`` and wait until it is cancelled
    instead of raising (``bus_closed.pull_until`` then ends the consumer). faststream's loop catches that error
    and fetches again at once, and nats-py raises it again without ever yielding: a spin at 100 % CPU in which no
    other task of the process ran, nor the process ended (so its supervisor never started it again)."""
    fetch = subscription.fetch

    async def fetch_or_park(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fetch(*args, **kwargs)
        except ConnectionClosedError:
            closed.set()
            await asyncio.Future()  # never done: the consumer stops its subscriber, which cancels this
            raise

    subscription.fetch = fetch_or_park


def mend_fetch(subscription: Any, *, batched: bool) -> asyncio.Event:
    """Mends ``subscription.fetch`` (module docstring); returns the event set once its connection is closed for
    good (``park_when_closed``)."""
    closed = asyncio.Event()
    fetch_timeouts_as_nats(subscription)
    if batched:
        hand_over_available(subscription)
    park_when_closed(subscription, closed)
    return closed
