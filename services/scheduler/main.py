"""Composition root of the scheduler: builds the snapshot, the follower and the pass runner."""

from __future__ import annotations

import asyncio
import logging
from typing import Mapping, Sequence

from contracts.envelope import Event
from contracts.subjects import EVENTS_STREAM
from services.application.facade import Facade
from services.common.bus import connect, ensure_streams
from services.application.context import make_context
from services.common.follow import follow
from services.common.settings import Settings
from services.scheduler.passes import PassRunner
from services.application.scheduling import Scheduling
from services.scheduler.snapshot import SUBJECTS, Snapshot

__all__ = ["SUBJECTS", "run_scheduler"]

log = logging.getLogger(__name__)

ACTOR = "service:scheduler"


async def run_scheduler(settings: Settings, stop: asyncio.Event) -> None:
    """Runs the scheduler until ``stop`` is set."""
    if not settings.nats_url or not settings.pg_dsn:
        raise ValueError("the scheduler needs BERTH_NATS_URL and BERTH_PG_DSN")
    store = Facade("scheduler-store")
    app = await store.open(Scheduling, settings.pg_dsn)
    nc = await connect(settings.nats_url, "berth-scheduler")
    try:
        js = nc.jetstream()
        await ensure_streams(js)

        async def record(events: Sequence[Event]) -> int | None:
            return await store.call(app.record_pass, events)

        async def catch_up(known: Mapping[str, int]) -> list[Event]:
            return await store.call(app.newer_than, dict(known))

        snapshot = Snapshot()
        runner = PassRunner(snapshot, record, catch_up, lambda: make_context(ACTOR))

        def on_event(event: Event) -> None:
            if snapshot.apply(event):
                runner.notify()

        caught_up = asyncio.Event()
        sub = await follow(js, SUBJECTS, on_event, caught_up)
        log.info("scheduler following %s %s", EVENTS_STREAM, ", ".join(SUBJECTS))
        try:
            await runner.run(stop, caught_up)
        finally:
            await sub.unsubscribe()
    finally:
        await nc.close()
        await store.close()
