"""The durable consumers' pull subscription reports every fetch timeout as ``nats.errors.TimeoutError``,
the one faststream's pull loop expects: nats-py >= 2.15 raises a plain ``asyncio.TimeoutError`` when a
deadline ran out between two requests, which ended faststream's loop and dropped its partial batch."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from nats.errors import TimeoutError as NatsTimeoutError

from services.common.pull_batches import fetch_timeouts_as_nats


def subscriber_raising(error: BaseException | None) -> SimpleNamespace:
    async def fetch(batch: int = 1, timeout: float | None = None) -> list[str]:
        if error is not None:
            raise error
        return ["m"] * batch

    return SimpleNamespace(subscription=SimpleNamespace(fetch=fetch))


@pytest.mark.parametrize("error", [asyncio.TimeoutError(), NatsTimeoutError()])
async def test_every_fetch_timeout_is_a_nats_timeout(error: BaseException) -> None:
    subscriber = subscriber_raising(error)
    fetch_timeouts_as_nats(subscriber.subscription)
    with pytest.raises(NatsTimeoutError):
        await subscriber.subscription.fetch(batch=4, timeout=0.1)


async def test_messages_and_other_errors_pass_through() -> None:
    subscriber = subscriber_raising(None)
    fetch_timeouts_as_nats(subscriber.subscription)
    assert await subscriber.subscription.fetch(batch=2, timeout=0.1) == ["m", "m"]
    failing = subscriber_raising(ConnectionError("gone"))
    fetch_timeouts_as_nats(failing.subscription)
    with pytest.raises(ConnectionError):
        await failing.subscription.fetch()
