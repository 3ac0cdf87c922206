"""The projector: applies the EVENTS stream to the read models in PostgreSQL.

It reads its position from ``projection_position``, consumes EVENTS from the next
sequence with an ordered consumer, and applies each batch (rows and position) in one
transaction. A message that cannot be applied goes to ``dlq.projector`` with the reason,
and the position moves past it. After any failure it resumes from the position stored
in PostgreSQL, the only truth. It never skips a gap: what the stream no longer holds (aged
out by its limits) is read from the event store (``gaps.py``, ``backfill.py``), and the log says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
from typing import Callable, Iterator, Sequence

import uvloop
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.subjects import EVENTS_STREAM, HEADER_POSITION
from projections.delivery import Delivery, Entry, Rejected, check
from projections.errors import PositionMovedError
from projections.position import Position
from services.common.bus import dead_letter
from services.common.bus_closed import BusClosedError, check_open
from services.common.entrypoint import run_until_signalled
from services.common.settings import Settings
from services.common.transient import OUTAGES, unavailable_dependency
from services.projector.applier import BatchApplier
from services.projector.backfill import StoreBackfill
from services.projector.feed import EventFeed
from services.projector.gaps import FeedDeliveries, header_position
from services.projector.runtime import RETRY_DELAYS, Runtime, wait_or_stop
from services.projector.upkeep import ReadModelUpkeep

__all__ = [
    "BATCH_SIZE",
    "CATCH_UP_FROM",
    "DEAD_LETTER_CONSUMER",
    "Projector",
    "REBUILD_BATCH_SIZE",
    "RebuildProgress",
    "main",
    "rebuild_read_models",
    "run_projector",
]

log = logging.getLogger(__name__)

BATCH_SIZE = 500
BULK_FROM = 50
"""A live batch of at least this many messages is applied in bulk (held rows and COPY; durable
commit): from about 30 it costs less CPU than a statement per change (2.4x less at 500: a burst);
below, COPY's round trips per table cost more than they save."""
REBUILD_BATCH_SIZE = 5000
"""Messages per transaction of a rebuild (bulk: its inserts go with COPY)."""
CATCH_UP_FROM = 5000
"""Messages behind the stream's end from which the live projector reads them from the event store instead
(``Projector._catch_up``): the stored bytes in batches of thousands, without NATS's parsing of each message."""
DEAD_LETTER_CONSUMER = "projector"
IDLE_WAIT = 0.5
DEAD_LETTER_TIMEOUT = 10.0


_Checked = tuple[list[Delivery], list[Entry | Rejected]]
"""A batch of deliveries with what ``check`` returned for each."""


class _FarBehind(Exception):
    """Raised when the live feed shows ``CATCH_UP_FROM`` messages or more still to apply: the event store
    applies them first (``Projector._catch_up``)."""

    def __init__(self, until_seq: int, behind: int) -> None:
        super().__init__(f"{behind} stream messages behind: catching up from the event store")
        self.until_seq = until_seq


class _GapContinues(Exception):
    """Raised when a gap longer than ``BACKFILL_LIMIT`` was partly filled: a new feed goes on."""

    def __init__(self, stream_seq: int) -> None:
        super().__init__(f"a gap in the stream filled from the event store up to sequence {stream_seq}")


class Projector:
    """Feeds EVENTS to the read models until stopped, or until a stream sequence is reached; raises
    ``bus_closed.BusClosedError`` once its connection is closed for good."""

    def __init__(self, js: JetStreamContext, applier: BatchApplier, backfill: StoreBackfill,
                 batch_size: int = BATCH_SIZE, *, bulk: bool = False,
                 on_applied: Callable[[Position], None] | None = None) -> None:
        """Uses ``js`` for the stream and the dead letters, ``applier`` for the read models,
        ``backfill`` for what the stream no longer holds; ``bulk`` (a rebuild) applies every batch of up
        to ``batch_size`` in bulk and without waiting for the WAL flush at commit (``apply_batch``); live,
        only a batch of ``BULK_FROM`` or more goes in bulk, committed durably; ``on_applied`` is told the
        position after each batch."""
        self._js = js
        self._applier = applier
        self._backfill = backfill
        self._batch_size = batch_size
        self._gaps = FeedDeliveries(js, backfill)
        self._bulk = bulk
        self._on_applied = on_applied
        self._store_declined_until = 0
        """The stream sequence up to which the event store last declined a catch-up (the stream applies it)."""

    async def run(self, stop: asyncio.Event, until_seq: int | None = None) -> Position:
        """Applies the stream until ``stop`` is set (or ``until_seq`` is applied); returns the
        position reached. Any failure is retried from the stored position, with backoff."""
        try:
            return await self._run(stop, until_seq)
        finally:
            OUTAGES.forget(DEAD_LETTER_CONSUMER)  # stopped: it waits out nothing any more

    async def _run(self, stop: asyncio.Event, until_seq: int | None) -> Position:
        failures, catch_up_to = 0, None
        while True:
            try:
                if catch_up_to is not None:  # in the try: a failure here is waited out and retried as any other
                    await self._catch_up(stop, catch_up_to)
                    catch_up_to = None
                position = await self._applier.position()
                if stop.is_set() or (until_seq is not None and position.stream_seq >= until_seq):
                    return position
                await self._follow(position, stop, until_seq)
                failures = 0
            except _FarBehind as exc:
                log.info("%s", exc)
                catch_up_to = exc.until_seq
            except (PositionMovedError, _GapContinues) as exc:
                log.info("%s; resuming from the stored position", exc)
            except BusClosedError:
                raise  # no retry can succeed: the process ends, and its supervisor starts it again
            except Exception as exc:  # noqa: BLE001 - the projector never dies: it resumes from PostgreSQL
                check_open(self._js, DEAD_LETTER_CONSUMER)  # ... unless its connection is closed for good
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                OUTAGES.failed(DEAD_LETTER_CONSUMER, unavailable_dependency(exc) or "its stream and read models", exc)
                log.warning("projector interrupted (%s: %s); resuming in %.2f s", type(exc).__name__, exc, delay)
                await wait_or_stop(stop, delay)

    async def _follow(self, position: Position, stop: asyncio.Event, until_seq: int | None) -> None:
        feed = EventFeed(self._js, position.stream_seq + 1, capacity=max(5000, 2 * self._batch_size))
        await feed.start()
        OUTAGES.recovered(DEAD_LETTER_CONSUMER)  # PostgreSQL (the position) and NATS (the feed) answered
        log.info("projecting from stream sequence %d (position %d)", position.stream_seq + 1, position.position)
        applied = position
        try:
            while not stop.is_set() and (until_seq is None or applied.stream_seq < until_seq):
                messages = await feed.next_batch(self._batch_size, IDLE_WAIT)
                if until_seq is None:  # following live (a rebuild has read the store already)
                    self._check_behind(messages, applied)
                deliveries, complete = await self._gaps.deliveries(messages, applied)
                for start in range(0, len(deliveries), self._batch_size):
                    applied = await self._apply(deliveries[start:start + self._batch_size], applied)
                if not complete:
                    raise _GapContinues(applied.stream_seq)
        finally:
            await feed.stop()

    def _check_behind(self, messages: list[Msg], applied: Position) -> None:
        """Raises ``_FarBehind`` when the stream's end, as the batch's last message knows it (its sequence and
        the messages pending after it), is ``CATCH_UP_FROM`` or more after ``applied``: after downtime, at
        start, or when a burst outran the projector. Not again before the stream has applied what the store
        last declined (its events and the stream's did not match), so a declined catch-up is not retried
        with every batch."""
        if not messages or applied.stream_seq < self._store_declined_until:
            return
        end = messages[-1].metadata.sequence.stream + messages[-1].metadata.num_pending
        if end - applied.stream_seq >= CATCH_UP_FROM:
            raise _FarBehind(end, end - applied.stream_seq)

    async def _catch_up(self, stop: asyncio.Event, until_seq: int) -> None:
        """Applies up to ``until_seq`` from the event store, as a rebuild reads it (``replay_store``, batches of
        ``REBUILD_BATCH_SIZE``), but into the live tables with their indexes, committed durably; whatever
        it doubts or fails at is left to the stream (``run`` goes on from the stored position)."""
        if not await self.replay_store(stop, until_seq, batch_size=REBUILD_BATCH_SIZE):
            self._store_declined_until = until_seq

    async def _apply(self, deliveries: list[Delivery], applied: Position,
                     checked: list[Entry | Rejected] | None = None) -> Position:
        """Applies one batch after ``applied`` (what a read model cannot apply is dead-lettered; ``checked``:
        the batch's ``check`` results, when known); returns the position reached."""
        loop = asyncio.get_running_loop()
        result = await self._applier.apply(deliveries, applied.stream_seq, lambda r: self._dead_letter(loop, r),
                                           bulk=self._bulk or len(deliveries) >= BULK_FROM, durable=not self._bulk,
                                           checked=checked)
        if result.rejected:
            log.warning("dead-lettered %d messages up to stream sequence %d", result.rejected, result.stream_seq)
        reached = Position(result.position, result.stream_seq)
        if self._on_applied is not None:
            self._on_applied(reached)
        return reached

    async def replay_store(self, stop: asyncio.Event, until_seq: int, *, reset: asyncio.Future[None] | None = None,
                           batch_size: int | None = None) -> bool:
        """Applies the stream's sequences up to ``until_seq`` from the event store instead of the stream,
        when the store holds exactly as many events after the applied position, up to the position of
        the message at ``until_seq``, as the stream has messages after the applied sequence: then each
        sequence is the next stored event (the relay published each once, in order; ``backfill.py``
        reads a gap the same way). The count covers what is to apply, not the whole history. The same bytes, without NATS's per-message
        parsing. Else, on any failure, or when another writer moves the position, it stops, and
        ``run`` goes on from the stored position with the stream. The next batch is read and checked
        (decoded) while one is applied, on threads of their own: both wait on PostgreSQL much of
        the time. With ``reset`` (a rebuild's reset of the read models, under way), the replay starts
        from position 0 and reads the store meanwhile; nothing is applied before the reset succeeded.
        ``batch_size``: events per read and transaction (the projector's own by default). Returns whether
        ``until_seq`` is applied."""
        reading: asyncio.Future[_Checked] | None = None
        try:
            applied = Position(0, 0) if reset is not None else await self._applier.position()
            position = await self._stored_position(until_seq)
            if position is None or applied.stream_seq >= until_seq:
                return applied.stream_seq >= until_seq
            counted = await self._backfill.count_between(applied.position, position)
            if counted != until_seq - applied.stream_seq:
                log.info("the event store holds %d events after position %d up to %d, the stream %d messages "
                         "after sequence %d: applying from the stream", counted, applied.position, position,
                         until_seq - applied.stream_seq, applied.stream_seq)
                return False
            log.info("applying from the event store: %d events up to position %d", counted, position)

            def read(after_position: int, after_seq: int) -> asyncio.Future[_Checked]:
                count = min(batch_size or self._batch_size, until_seq - after_seq)
                return asyncio.ensure_future(self._stored_batch(after_position, after_seq + 1, count))

            reading = read(applied.position, applied.stream_seq)
            while not stop.is_set() and applied.stream_seq < until_seq:
                (deliveries, checked), reading = await reading, None
                if not deliveries:
                    return False
                last = deliveries[-1]
                if last.stream_seq < until_seq:
                    reading = read(int(last.position or 0), last.stream_seq)
                if reset is not None:
                    await reset
                applied = await self._apply(deliveries, applied, checked)
            return applied.stream_seq >= until_seq
        except PositionMovedError as exc:
            log.info("%s; applying the rest from the stream", exc)
        except Exception as exc:  # noqa: BLE001 - run() goes on from the stored position, retrying
            log.warning("applying from the event store interrupted (%s: %s); going on from the stream",
                        type(exc).__name__, exc)
        finally:
            if reading is not None:
                reading.cancel()
                await asyncio.gather(reading, return_exceptions=True)
        return False

    async def _stored_batch(self, after_position: int, first_seq: int, count: int) -> _Checked:
        """Reads up to ``count`` stored events after ``after_position`` as deliveries numbered from
        ``first_seq``, and checks them (on a thread: the loop goes on meanwhile)."""
        deliveries = await self._backfill.deliveries(after_position, first_seq, count)
        return deliveries, await asyncio.to_thread(lambda: [check(d) for d in deliveries])

    async def _stored_position(self, seq: int) -> int | None:
        """Returns the ``Berth-Position`` of the stream's message at ``seq`` (None: none, or no such message)."""
        if seq < 1:
            return None
        try:
            msg = await self._js.get_msg(EVENTS_STREAM, seq=seq)
        except NotFoundError:
            return None
        position = header_position((msg.headers or {}).get(HEADER_POSITION), 0)
        return position or None

    def _dead_letter(self, loop: asyncio.AbstractEventLoop, rejected: Rejected) -> None:
        """Publishes a rejected message to the dead letters; called on the database thread,
        before the batch commits."""
        delivery = rejected.delivery
        error = f"stream_seq {delivery.stream_seq}, position {delivery.position}: {rejected.error}"
        publish = dead_letter(self._js, DEAD_LETTER_CONSUMER, delivery.subject, delivery.data, error)
        asyncio.run_coroutine_threadsafe(publish, loop).result(DEAD_LETTER_TIMEOUT)


async def run_projector(settings: Settings, stop: asyncio.Event, *, rebuild: bool = False) -> None:
    """Projects EVENTS on ``settings.nats_url`` into the read models at ``settings.pg_dsn``
    until ``stop`` is set, waiting for NATS to answer first; with ``rebuild`` it first rebuilds
    the read models in bulk up to the stream's last sequence (as ``rebuild_read_models``), then
    goes on with what comes after. Meanwhile it tends the read models (``ReadModelUpkeep``)."""
    runtime = Runtime(settings)
    try:
        if not await runtime.open(stop):
            return
        if rebuild:
            await _rebuild(runtime, stop)
        tending = asyncio.create_task(ReadModelUpkeep(settings.pg_dsn).run(stop), name="read-model-upkeep")
        try:
            await Projector(runtime.js, runtime.applier, runtime.backfill).run(stop)
        finally:
            if not stop.is_set():  # stopped, it ends by itself (and closes its connection)
                tending.cancel()
            await asyncio.gather(tending, return_exceptions=True)
    finally:
        await runtime.close()


RebuildProgress = Callable[[int, int], None]
"""Told after each batch of a rebuild: the stream sequence applied, and the one the rebuild goes to."""


async def rebuild_read_models(settings: Settings, stop: asyncio.Event | None = None, *,
                              from_store: bool = True, progress: RebuildProgress | None = None) -> Position:
    """Drops and recreates the read models, replays EVENTS up to its last sequence at the
    time of the call in bulk (batches of ``REBUILD_BATCH_SIZE``, secondary indexes created at the
    end), and returns the position reached. The events are read from the event store when it holds
    exactly the stream's (``Projector.replay_store``); ``from_store=False`` reads the stream only
    (``bench_pipeline.py`` compares the two). ``progress`` is told how far it got after each batch. A NATS
    that does not answer yet is waited out (retried and logged), as the projector waits it out."""
    stop = stop or asyncio.Event()
    runtime = Runtime(settings)
    try:
        if not await runtime.open(stop):  # a NATS not answering yet (a cluster electing a leader) is waited out
            raise RuntimeError("the rebuild was stopped before NATS answered")
        return await _rebuild(runtime, stop, from_store, progress)
    finally:
        await runtime.close()


async def _rebuild(runtime: Runtime, stop: asyncio.Event, from_store: bool = True,
                   progress: RebuildProgress | None = None) -> Position:
    """The bulk rebuild on an open ``runtime``, up to the stream's last sequence now; returns the
    position reached (less when ``stop`` came first; the indexes are created either way)."""
    target = (await runtime.js.stream_info(EVENTS_STREAM)).state.last_seq
    log.info("rebuilding the read models from %d stream messages", target)
    resetting = asyncio.ensure_future(runtime.applier.reset(bulk=True))  # while the store is read
    projector = Projector(runtime.js, runtime.applier, runtime.backfill, REBUILD_BATCH_SIZE, bulk=True,
                          on_applied=None if progress is None else lambda reached: progress(reached.stream_seq, target))
    with _collector_paused():
        if from_store:
            await projector.replay_store(stop, target, reset=resetting)
        await resetting  # its failure ends the rebuild here, whatever the store's replay made of it
        reached = await projector.run(stop, until_seq=target)
    await runtime.applier.finish_bulk()
    log.info("read models rebuilt up to stream sequence %d (position %d)", reached.stream_seq, reached.position)
    return reached


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pauses CPython's cyclic garbage collector while a rebuild replays, and restores it after. A batch holds
    thousands of events, deliveries and rows alive (tracked containers, none garbage before the batch ends,
    and freed by reference counting then): each young collection walked them all again, 12 or 13 per 20,000
    events (``bench_pipeline.py`` (d): 0.06-0.1 s of a 1 s rebuild on an idle 2-core machine, 0.2-0.4 s on a
    busy one), holding the GIL that reading, decoding and projecting share. What a rebuild leaves in cycles
    (the thread of each batch's ``COPY`` beside, a few futures) is a few objects per batch, collected once
    the collector runs again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def main(argv: Sequence[str] | None = None) -> None:
    """Runs the projector from ``BERTH_*`` settings until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m services.projector", description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true",
                        help="rebuild the read models in bulk up to the stream's last sequence, then go on projecting")
    args = parser.parse_args(argv)
    run_until_signalled("projector", lambda settings, stop: run_projector(settings, stop, rebuild=args.rebuild),
                        loop_factory=uvloop.new_event_loop)
