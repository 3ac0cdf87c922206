"""The live projector reads from the event store what it is far behind on: after downtime, at start,
and while it follows, when a burst outran it."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from nats.js import JetStreamContext

from projections.rebuild import reset_read_models
from services.application.sessions import Sessions
from services.common.settings import Settings
from services.projector import applier as applier_module
from services.projector import backfill as backfill_module
from services.projector import main as projector_main
from services.projector.main import run_projector
from services.relay.main import run_relay
from tests.support.projector import (
    projector_started_behind,
    published_and_projected,
    read_models_dump,
    three_stored_events_then_a_foreign_message,
)
from tests.support.relay import (  # noqa: F401
    applied_seq,
    jetstream,
    own_nats,
    published,
    read_model_rows,
    request_sessions,
    run_until_stopped,
    sessions,
    settings,
    stop_task,
    store_ids,
)
from tests.support.waiting import async_wait_for


async def _requested_and_published(js: JetStreamContext, sessions: Sessions, indices: range, dsn: str) -> int:
    """Requests the sessions of ``indices`` and waits for the relay to publish them; returns the stream's
    last sequence (the relay publishes each stored event once, in order: the store's count)."""
    await asyncio.to_thread(request_sessions, sessions, indices)
    stored = len(store_ids(dsn))
    await async_wait_for(lambda: published(js, stored), timeout=30, message=f"the relay did not publish {stored}")
    return stored


def _read_from_store(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Returns the list to which every stream sequence read from the event store is added."""
    read: list[int] = []
    deliveries = backfill_module.StoreBackfill.deliveries

    async def reading(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        batch = await deliveries(self, *args, **kwargs)
        read.extend(delivery.stream_seq for delivery in batch)
        return batch

    monkeypatch.setattr(backfill_module.StoreBackfill, "deliveries", reading)
    return read


async def _a_burst_while_a_batch_is_held(settings: Settings, sessions: Sessions,
                                         monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """Runs the relay and a projector (``CATCH_UP_FROM`` 10); while the projector applies the batch of the
    second session, a burst of ten more reaches the stream; returns the stream sequences of the held batch's
    last event and of the burst's, once the projector applied the burst (it must not have died)."""
    monkeypatch.setattr(projector_main, "CATCH_UP_FROM", 10)
    gate, held = asyncio.Event(), asyncio.Event()
    gate.set()
    apply = applier_module.BatchApplier.apply

    async def gated(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        held.set()
        await gate.wait()
        return await apply(self, *args, **kwargs)

    monkeypatch.setattr(applier_module.BatchApplier, "apply", gated)
    relay = await run_until_stopped(run_relay, settings)
    projector = await run_until_stopped(run_projector, settings)
    try:
        async with jetstream(settings.nats_url) as js:
            first = await _requested_and_published(js, sessions, range(1), settings.pg_dsn)
            await async_wait_for(lambda: applied_seq(settings.pg_dsn) >= first, timeout=30, message="not applied")
            gate.clear()
            held.clear()
            before = await _requested_and_published(js, sessions, range(1, 2), settings.pg_dsn)
            await async_wait_for(held.is_set, timeout=30, message="the projector took no batch")
            end = await _requested_and_published(js, sessions, range(2, 12), settings.pg_dsn)
            gate.set()
            await async_wait_for(lambda: projector[1].done() or applied_seq(settings.pg_dsn) >= end, timeout=30,
                                 message="the projector did not apply the burst")
            assert not projector[1].done(), projector[1].exception()
    finally:
        gate.set()
        await stop_task(*projector)
        await stop_task(*relay)
    assert read_model_rows(settings.pg_dsn, "SELECT count(*) FROM sessions") == [(12,)]
    return before, end


async def test_a_projector_that_a_burst_left_far_behind_catches_up_from_the_event_store(
    settings: Settings, sessions: Sessions, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A burst of ``CATCH_UP_FROM`` events or more while the projector applies a batch: it applies the
    burst from the event store (before, from the stream, 500 messages at a time)."""
    read = _read_from_store(monkeypatch)
    before, end = await _a_burst_while_a_batch_is_held(settings, sessions, monkeypatch)
    assert set(range(before + 1, end + 1)) <= set(read)  # the held batch ended at ``before`` or earlier


async def test_a_catch_up_that_fails_is_waited_out_and_tried_again(
    settings: Settings, sessions: Sessions, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL going away during a catch-up does not end the projector (it did: the failure was raised
    outside its retries): it waits, then catches up again."""
    read = _read_from_store(monkeypatch)
    replay_store, failed = projector_main.Projector.replay_store, []

    async def failing_once(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not failed:
            failed.append(True)
            raise psycopg.OperationalError("the server closed the connection unexpectedly")
        return await replay_store(self, *args, **kwargs)

    monkeypatch.setattr(projector_main.Projector, "replay_store", failing_once)
    monkeypatch.setattr(projector_main, "RETRY_DELAYS", (0.05,))
    before, end = await _a_burst_while_a_batch_is_held(settings, sessions, monkeypatch)
    assert failed and set(range(before + 1, end + 1)) <= set(read)


@pytest.mark.parametrize("catch_up_from, from_store", [(10, True), (10**6, False)])
async def test_a_projector_far_behind_at_start_catches_up_from_the_event_store(
    settings: Settings, sessions: Sessions, monkeypatch: pytest.MonkeyPatch, catch_up_from: int, from_store: bool,
) -> None:
    """``CATCH_UP_FROM`` messages or more behind the stream at start: the projector reads them from the
    event store (as a rebuild does, into the live tables); fewer: from the stream. The same tables."""
    live = await published_and_projected(settings, sessions, 15)
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        reset_read_models(conn)  # as after downtime: every message of the stream still to apply
    read = await projector_started_behind(settings, monkeypatch, catch_up_from)
    assert sum(read) == (len(live["event_log"]) if from_store else 0)
    assert read_models_dump(settings.pg_dsn) == live


async def test_a_catch_up_reads_the_store_when_the_stream_s_foreign_message_was_applied_before_it(
    settings: Settings, sessions: Sessions, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store and the stream are compared only over what is to apply: a message that is not a stored
    event, dead-lettered before the projector stopped, does not send its catch-up to the stream."""
    relay = await run_until_stopped(run_relay, settings)
    async with jetstream(settings.nats_url) as js:
        await three_stored_events_then_a_foreign_message(js, sessions)
        projector = await run_until_stopped(run_projector, settings)
        await async_wait_for(lambda: applied_seq(settings.pg_dsn) >= 4, timeout=30, message="not applied")
        await stop_task(*projector)
        await asyncio.to_thread(request_sessions, sessions, range(3, 13))
        await async_wait_for(lambda: published(js, 14), timeout=30, message="the relay did not publish 10 more events")
    await stop_task(*relay)
    read = await projector_started_behind(settings, monkeypatch, 5)
    assert sum(read) == 10
    assert read_model_rows(settings.pg_dsn, "SELECT count(*) FROM sessions") == [(13,)]
