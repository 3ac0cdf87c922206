"""Helpers of the projector's integration tests (live, rebuild, catch-up): a relay and a projector run in
the test's event loop (``tests.support.relay``) until the read models hold what the store does."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from nats.js import JetStreamContext

from projections.rebuild import dump_read_models
from services.application.sessions import Sessions
from services.common.bus import ensure_streams
from services.common.settings import Settings
from services.projector import backfill as backfill_module
from services.projector import main as projector_main
from services.projector.main import run_projector
from services.relay.main import run_relay
from tests.support.relay import applied_position, published, request_sessions, run_until_stopped, stop_task, store_ids
from tests.support.waiting import async_wait_for

__all__ = [
    "caught_up",
    "projector_started_behind",
    "published_and_projected",
    "read_models_dump",
    "three_stored_events_then_a_foreign_message",
]


async def caught_up(dsn: str, timeout: float = 30) -> None:
    """Waits until the projector has applied every event of the store."""
    target = max(store_ids(dsn), default=0)
    await async_wait_for(
        lambda: applied_position(dsn) >= target, timeout=timeout, message=f"projector did not reach {target}"
    )


async def published_and_projected(settings: Settings, sessions: Sessions, count: int) -> dict:
    """Has the relay publish ``count`` sessions' requests and the projector apply them; returns the read models."""
    relay = await run_until_stopped(run_relay, settings)
    projector = await run_until_stopped(run_projector, settings)
    await asyncio.to_thread(request_sessions, sessions, range(count))
    await caught_up(settings.pg_dsn)
    await stop_task(*projector)
    await stop_task(*relay)
    return read_models_dump(settings.pg_dsn)


def read_models_dump(dsn: str) -> dict:
    """Returns every row of every read model (``dump_read_models``), on a connection of its own."""
    with psycopg.connect(dsn) as conn:
        return dump_read_models(conn)


async def three_stored_events_then_a_foreign_message(js: JetStreamContext, sessions: Sessions) -> None:
    """Has the (running) relay publish three sessions' requests, then publishes after them a message that is
    not a stored event (undecodable, without a position)."""
    await ensure_streams(js)
    await asyncio.to_thread(request_sessions, sessions, range(3))
    await async_wait_for(lambda: published(js, 3), timeout=30, message="the relay did not publish 3 events")
    await js.publish("ev.session.x.requested", b"not json")


async def projector_started_behind(settings: Settings, monkeypatch: pytest.MonkeyPatch, catch_up_from: int) -> list[int]:
    """Runs a projector with ``CATCH_UP_FROM`` at ``catch_up_from`` until it applied the whole store; returns
    the sizes of the batches it read from the event store."""
    monkeypatch.setattr(projector_main, "CATCH_UP_FROM", catch_up_from)
    read: list[int] = []
    deliveries = backfill_module.StoreBackfill.deliveries

    async def reading(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        batch = await deliveries(self, *args, **kwargs)
        read.append(len(batch))
        return batch

    monkeypatch.setattr(backfill_module.StoreBackfill, "deliveries", reading)
    projector = await run_until_stopped(run_projector, settings)
    await caught_up(settings.pg_dsn)
    await stop_task(*projector)
    return read
