"""The relay: follows the event store's notification log and publishes every event to the
EVENTS stream, in order, exactly once.

On start, and after any failure, it re-reads the stream's last ``Berth-Position`` and
resumes after it: the stream, not the relay, is the truth, so a crash or a lost ack can
neither duplicate nor skip an event.

An event NATS refuses for good (too large, invalid subject; the store's travel guard makes
one impossible, but history or a foreign writer may hold one) stops the relay loudly: an
ERROR naming the notification id, aggregate and reason, the ``berth_relay_stuck`` marker
that ``berth doctor`` and ``/healthz`` report, and one retry per ``STUCK_RETRY`` seconds
(after an operator raised ``max_payload``, say) instead of a retry loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Sequence

from eventsourcing.persistence import Notification
import uvloop
from nats.aio.client import Client

from contracts.travel import HEADER_ALLOWANCE, MAX_EVENT_BYTES
from services.common.bus import connect, ensure_streams
from services.common.entrypoint import run_until_signalled
from services.common.settings import Settings
from services.common.waiting import first_of
from services.common.transient import OUTAGES, unavailable_dependency
from services.relay.source import ChangeSignal, NotificationSource
from services.relay.stream import PipelinedPublisher, StreamCursor, UnpublishableError, read_cursor, send_batch
from services.relay.stuck import StuckMarker

__all__ = ["BATCH_SIZE", "STUCK_RETRY", "main", "run_relay"]

log = logging.getLogger(__name__)

BATCH_SIZE = 1000
ACK_TIMEOUT = 10.0
IDLE_POLL = 1.0
RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)
STUCK_RETRY = 60.0
"""Seconds between two tries of an event NATS refused for good."""


async def run_relay(
    settings: Settings, stop: asyncio.Event, *, batch_size: int = BATCH_SIZE, stuck_retry: float = STUCK_RETRY
) -> None:
    """Relays events from the event store at ``settings.pg_dsn`` to EVENTS on
    ``settings.nats_url`` until ``stop`` is set; retries (with backoff) whatever fails, and an
    event NATS refuses for good once per ``stuck_retry`` seconds (see the module's doc)."""
    if not settings.nats_url or not settings.pg_dsn:
        raise ValueError("the relay needs BERTH_NATS_URL and BERTH_PG_DSN")
    marker = StuckMarker(settings.pg_dsn)
    await marker.load()
    source: NotificationSource | None = None
    listener: asyncio.Task | None = None
    nc: Client | None = None
    failures = 0
    try:
        while not stop.is_set():
            try:
                if source is None:
                    source = await NotificationSource.open(settings.pg_dsn)
                    signal_ = ChangeSignal(settings.pg_dsn, source.channel)
                    listener = asyncio.create_task(signal_.run(), name="relay-listen")
                if nc is None:
                    nc = await connect(settings.nats_url, "berth-relay", settings.nats_creds or None)
                    _check_max_payload(nc)
                    js = nc.jetstream()
                    publisher = PipelinedPublisher(nc)
                    await publisher.start()
                await ensure_streams(js)
                cursor = await read_cursor(js)
                log.info("relaying after notification %d (stream sequence %d)", cursor.position, cursor.last_seq)
                failures = 0
                await _pump(publisher, source, signal_, cursor, stop, batch_size, marker)
            except UnpublishableError as exc:
                log.error("relay stuck at notification %d (aggregate %s, %s): %s; nothing after it is published "
                          "until it can be (berth doctor names it); trying again in %.0f s",
                          exc.notification_id, exc.aggregate_id, exc.topic, exc.reason, stuck_retry)
                await marker.mark(exc)
                failures = 0
                await first_of(stop, timeout=stuck_retry)
            except Exception as exc:  # noqa: BLE001 - the relay never dies: it re-syncs from the stream
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                log.warning("relay interrupted (%s: %s); re-syncing in %.2f s", type(exc).__name__, exc, delay)
                OUTAGES.failed("relay", unavailable_dependency(exc) or "its event store and stream", exc)
                await first_of(stop, timeout=delay)
    finally:
        OUTAGES.forget("relay")  # stopped: it waits out nothing any more
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        if nc is not None:
            await nc.close()
        if source is not None:
            await source.close()


async def _pump(
    publisher: PipelinedPublisher,
    source: NotificationSource,
    signal_: ChangeSignal,
    cursor: StreamCursor,
    stop: asyncio.Event,
    batch_size: int,
    marker: StuckMarker,
) -> None:
    """Publishes new notifications until ``stop``; raises on any failure (the caller re-syncs).

    While a full batch waits for its acks, the next one is already read from the store."""
    stored = await source.max_id()
    OUTAGES.recovered("relay")  # the stream (the cursor) and the event store (its last id) answered
    if stored < cursor.position:
        log.error("the stream is at notification %d but the event store only at %d: nothing to relay"
                  " until the store passes it", cursor.position, stored)

    def read_after(position: int) -> asyncio.Future[Sequence[Notification]]:
        signal_.changed.clear()  # before reading: a commit notified from now on is not missed
        return asyncio.ensure_future(source.read(position, batch_size))

    ahead: asyncio.Future[Sequence[Notification]] | None = None
    try:
        while not stop.is_set():
            reading, ahead = ahead or read_after(cursor.position), None
            notifications = await reading
            if not notifications:
                await first_of(signal_.changed, stop, timeout=IDLE_POLL)
                continue
            in_flight = await send_batch(publisher, notifications, cursor)
            if len(notifications) == batch_size:
                ahead = read_after(notifications[-1].id)
            cursor = await in_flight.confirmed(ACK_TIMEOUT)
            log.debug("published up to notification %d", cursor.position)
            await marker.passed(cursor.position)
    finally:
        if ahead is not None:
            ahead.cancel()
            await asyncio.gather(ahead, return_exceptions=True)


def _check_max_payload(nc: Client) -> None:
    """Logs an ERROR when the server takes smaller messages than the events the store may record."""
    if nc.max_payload < MAX_EVENT_BYTES + HEADER_ALLOWANCE:
        log.error("NATS max_payload is %d bytes, below the %d bytes an event (with headers) may have: "
                  "raise max_payload to at least 1 MiB or the relay may get stuck", nc.max_payload,
                  MAX_EVENT_BYTES + HEADER_ALLOWANCE)



def main() -> None:
    """Runs the relay from ``BERTH_*`` settings until SIGTERM or SIGINT."""
    run_until_signalled("relay", run_relay, loop_factory=uvloop.new_event_loop)
