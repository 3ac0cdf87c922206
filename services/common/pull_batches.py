"""A batched pull that hands over what is there instead of waiting to fill the batch.

faststream's batched pull loop keeps fetching until it has ``batch_size`` messages or its
timeout ran out, and nats-py's ``fetch(batch=n)``, once a lingering request got its first
message, waits for the rest until the request expires. Either way a lone message (a kernel's
report while the platform is quiet) waited the whole timeout (``flow.BATCH_WAIT``) before its
handler saw it: on every hop of a session's start. ``hand_over_available`` makes each round
wait for its FIRST message only (a lingering ``fetch(batch=1)``, answered as soon as one is
there), take at once what else is already available (up to the batch, ``AVAILABLE_WAIT``), and
end the round; under load the batches still fill from what queued up meanwhile.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError

__all__ = ["AVAILABLE_WAIT", "hand_over_available"]

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
        if batch > 1:
            try:
                messages += await fetch(batch=batch - 1, timeout=AVAILABLE_WAIT, **kwargs)
            except (NatsTimeoutError, asyncio.TimeoutError):
                pass  # nothing else there
        handed = len(messages) < batch
        return messages

    subscription.fetch = fetch_available
