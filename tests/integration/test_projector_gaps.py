"""The projector when the EVENTS stream no longer holds what it needs (messages aged out by the
stream's limits, here purged), on real NATS and PostgreSQL: it reads the missing events from the
event store, says so, and ends with the same read models as a fresh rebuild — every event
applied, none twice."""

from __future__ import annotations

import asyncio
import logging

import pytest
from nats.js import JetStreamContext

from contracts.subjects import EVENTS_STREAM, HEADER_POSITION, event_subject
from services.application.context import make_context
from services.common.transient import OUTAGES
from services.application.sessions import Sessions
from services.common.bus import ensure_streams
from services.common.settings import Settings
from services.projector.main import rebuild_read_models, run_projector
from services.relay.main import run_relay
from tests.support.projector import caught_up, read_models_dump
from tests.support.relay import (  # noqa: F401
    applied_seq,
    jetstream,
    own_nats,
    request_sessions,
    run_until_stopped,
    sessions,
    settings,
    stop_task,
    store_ids,
    store_notifications,
)
from tests.support.waiting import async_wait_for


async def relayed(js: JetStreamContext, dsn: str) -> bool:
    return (await js.stream_info(EVENTS_STREAM)).state.last_seq == len(store_ids(dsn))


async def test_an_aged_out_gap_is_read_from_the_event_store(
        settings: Settings, sessions: Sessions, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="services.projector.gaps")
    relay = await run_until_stopped(run_relay, settings)
    projector = await run_until_stopped(run_projector, settings)
    await asyncio.to_thread(request_sessions, sessions, range(10))
    await caught_up(settings.pg_dsn)
    await stop_task(*projector)
    applied = applied_seq(settings.pg_dsn)

    # the projector is away while more happens, and the stream loses what it did not apply
    await asyncio.to_thread(request_sessions, sessions, range(10, 40))
    for i in range(0, 40, 5):
        await asyncio.to_thread(sessions.terminate, f"s-{i}", make_context("ak-test"))
    async with jetstream(settings.nats_url) as js:
        await async_wait_for(lambda: relayed(js, settings.pg_dsn), timeout=30, message="relay caught up")
        await js.purge_stream(EVENTS_STREAM, seq=applied + 25)  # sequences up to applied + 24 are gone
        assert (await js.stream_info(EVENTS_STREAM)).state.first_seq == applied + 25

    projector = await run_until_stopped(run_projector, settings)
    await caught_up(settings.pg_dsn)
    await stop_task(*projector)
    await stop_task(*relay)
    projected = read_models_dump(settings.pg_dsn)
    assert any("no longer holds sequences" in r.getMessage() for r in caplog.records), "it says so"

    store = store_ids(settings.pg_dsn)
    assert len(projected["event_log"]) == len(store), "every event applied once"
    assert len(projected["sessions"]) == 40

    await rebuild_read_models(settings)  # a fresh rebuild: the stream lost its first messages too
    assert read_models_dump(settings.pg_dsn) == projected


async def test_a_stream_that_is_not_the_stores_events_in_order_is_refused_not_skipped(
        settings: Settings, sessions: Sessions, caplog: pytest.LogCaptureFixture) -> None:
    """The stream lost sequences 1-2, and its sequence 3 is the store's 6th event, not its 3rd:
    no sequence can be trusted, so the projector applies nothing and says why (and retries)."""
    caplog.set_level(logging.WARNING, logger="services.projector.gaps")
    await asyncio.to_thread(request_sessions, sessions, range(6))
    stored = store_notifications(settings.pg_dsn)
    async with jetstream(settings.nats_url) as js:
        await ensure_streams(js)
        for notification_id, topic, originator_id, state in (*stored[:2], stored[5]):
            await js.publish(event_subject(topic, originator_id), state, headers={HEADER_POSITION: str(notification_id)})
        await js.purge_stream(EVENTS_STREAM, seq=3)
    projector = await run_until_stopped(run_projector, settings)
    try:
        await async_wait_for(lambda: any("does not hold the store's events in order" in r.getMessage()
                                         for r in caplog.records), timeout=30, message="it says why")
        assert applied_seq(settings.pg_dsn) == 0, "nothing applied out of order, nothing skipped"
        await async_wait_for(lambda: any("projector" in o for o in OUTAGES.describe()), timeout=30,
                             message="the refusal is in the health answer")
    finally:
        await stop_task(*projector)
    # stopped, it waits out nothing: an outage left behind made this process's /healthz 'degraded' for ever
    assert not [o for o in OUTAGES.describe() if "projector" in o], OUTAGES.describe()

