"""Composition root of the scheduler: builds the snapshot (from its checkpoint when there is one it
can trust), its follower (``flow.SNAPSHOT``), the checkpointer and the pass runner. A connection closed
for good ends it (``bus_closed.BusClosedError``), so that its supervisor starts it again."""

from __future__ import annotations

import asyncio
import logging
from typing import Mapping, Sequence

from contracts.envelope import Event
from services.application.facade import Facade
from services.common.bus import ensure_streams
from services.common.bus_closed import follow_until, stop_broker
from services.application.context import make_context
from services.common.flow import follow, open_broker
from services.common.settings import Settings
from services.common.transient import OUTAGES
from contracts.subjects import EVENTS_STREAM
from services.scheduler.checkpoint import Checkpointer, checkpoint_bucket, load_checkpoint
from services.scheduler.flow import SNAPSHOT, SnapshotFeed
from services.scheduler.passes import PassRunner
from services.application.scheduling import Scheduling
from services.scheduler.snapshot import Snapshot

__all__ = ["run_scheduler"]

log = logging.getLogger(__name__)

ACTOR = "service:scheduler"
PAYLOAD_ALLOWANCE = 64 * 1024
"""Bytes of a message left to the headers and protocol when a checkpoint is sized."""


async def run_scheduler(settings: Settings, stop: asyncio.Event) -> None:
    """Runs the scheduler until ``stop`` is set."""
    if not settings.nats_url or not settings.pg_dsn:
        raise ValueError("the scheduler needs BERTH_NATS_URL and BERTH_PG_DSN")
    store = Facade("scheduler-store")
    app = await store.open(Scheduling, settings.pg_dsn)
    broker = open_broker(settings.nats_url, "berth-scheduler", settings.nats_creds or None)
    nc = await broker.connect()
    try:
        js = nc.jetstream()
        await ensure_streams(js)

        async def record(events: Sequence[Event]) -> int | None:
            return await store.call(app.record_pass, events)

        async def catch_up(known: Mapping[str, int]) -> list[Event]:
            return await store.call(app.newer_than, dict(known))

        kv = await checkpoint_bucket(js)
        stream = await js.stream_info(EVENTS_STREAM)
        checkpoint = await load_checkpoint(kv, stream)
        snapshot = Snapshot.restore(checkpoint.state) if checkpoint is not None else Snapshot()
        runner = PassRunner(snapshot, record, catch_up, lambda: make_context(ACTOR))
        caught_up = asyncio.Event()
        await broker.start()
        sub = await follow(js, SNAPSHOT, SnapshotFeed(snapshot, runner), caught_up,
                           start_seq=checkpoint.stream_seq + 1 if checkpoint is not None else None)
        log.info("scheduler following %s %s", SNAPSHOT.stream, ", ".join(SNAPSHOT.filters()))
        checkpointer = Checkpointer(kv, snapshot, lambda: sub.position,
                                    (checkpoint.stream_seq if checkpoint is not None else 0, stream.created),
                                    nc.max_payload - PAYLOAD_ALLOWANCE)
        checkpoints = asyncio.create_task(checkpointer.run(stop), name="scheduler-checkpoints")
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(runner.run(stop, caught_up))
                tasks.create_task(follow_until(stop, js, SNAPSHOT.name))  # the follow never hears of a closure
        finally:
            await sub.stop()
            if stop.is_set():
                await checkpoints  # a last checkpoint, of the snapshot as the follow left it
            else:  # ended by an error (its connection closed for good): it would wait for ``stop`` for ever
                checkpoints.cancel()
                await asyncio.gather(checkpoints, return_exceptions=True)
    finally:
        OUTAGES.forget("scheduler")  # stopped: it waits out nothing any more
        await stop_broker(broker)
        await store.close()
