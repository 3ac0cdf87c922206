"""The feed's messages as deliveries for the read models, in stream order without a hole: what the stream
no longer holds (aged out by its limits, deleted) is read from the event store, and the log says so; a
message skipped that the stream still holds, or an event neither holds, is a ``GapError``."""

from __future__ import annotations

import logging

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.subjects import EVENTS_STREAM, HEADER_POSITION
from projections.delivery import Delivery
from projections.position import Position
from services.projector.backfill import StoreBackfill

__all__ = ["BACKFILL_LIMIT", "FeedDeliveries", "GapError", "header_position"]

log = logging.getLogger(__name__)

BACKFILL_LIMIT = 10_000
"""Events read from the event store at once for a gap in the stream (then the feed starts again)."""


class GapError(RuntimeError):
    """Raised when the feed skipped a message that the stream still holds, or when neither the
    stream nor the event store holds an event the read models need."""


def header_position(header: str | int | None, previous: int) -> int:
    """Returns the position a message's header names, ``previous`` when it names none."""
    if isinstance(header, int):
        return header
    return int(header) if header and header.isdigit() else previous


class FeedDeliveries:
    """Turns the feed's batches into deliveries, filling the stream's holes from the event store."""

    def __init__(self, js: JetStreamContext, backfill: StoreBackfill) -> None:
        """Asks ``js`` whether a skipped message exists, ``backfill`` for what the stream no longer holds."""
        self._js = js
        self._backfill = backfill

    async def deliveries(self, messages: list[Msg], applied: Position) -> tuple[list[Delivery], bool]:
        """Returns the deliveries of ``messages`` after ``applied``, with what the stream no
        longer holds before one of them read from the event store; False when the store was
        read up to ``BACKFILL_LIMIT`` and the rest of the batch left for the next feed."""
        deliveries: list[Delivery] = []
        last, after = applied.stream_seq, applied.position
        for msg in messages:
            seq = msg.metadata.sequence.stream
            if seq <= last:
                continue
            if seq != last + 1:
                await self._check_gap(last + 1, seq)
                next_position = header_position((msg.headers or {}).get(HEADER_POSITION), 0)
                filled = await self._backfill_gap(after, last + 1, seq, next_position)
                deliveries += filled
                last, after = filled[-1].stream_seq, int(filled[-1].position or after)
                if last != seq - 1:
                    return deliveries, False
            delivery = Delivery(seq, msg.subject, (msg.headers or {}).get(HEADER_POSITION), msg.data)
            deliveries.append(delivery)
            last, after = seq, header_position(delivery.position, after)
        return deliveries, True

    async def _check_gap(self, missing: int, got: int) -> None:
        try:
            await self._js.get_msg(EVENTS_STREAM, seq=missing)
        except NotFoundError:
            return  # aged out of (or deleted from) the stream: the event store still has it
        raise GapError(f"the feed went from sequence {missing - 1} to {got}, but {missing} exists")

    async def _backfill_gap(self, after: int, first_seq: int, next_seq: int, next_position: int) -> list[Delivery]:
        """Returns the stored events of stream sequences ``first_seq`` to ``next_seq - 1`` (at most
        ``BACKFILL_LIMIT``), which the stream no longer holds; raises ``GapError`` when the event
        store does not have them all, or when the one it has after them is not the message at
        ``next_seq`` (position ``next_position``; 0: not known): then the stream is not the
        store's events in order (recreated from elsewhere, say) and no sequence can be trusted."""
        count = min(next_seq - first_seq, BACKFILL_LIMIT)
        whole = count == next_seq - first_seq
        filled = await self._backfill.deliveries(after, first_seq, count + 1 if whole else count)
        if len(filled) < count + whole:  # with the whole gap, the store also has the next message's event
            raise GapError(f"the stream no longer holds sequences {first_seq}-{next_seq - 1} and the event store "
                           f"has {len(filled)} events after position {after}, not {count + whole}")
        if whole:
            following = filled.pop()
            if next_position and following.position != next_position:
                raise GapError(f"the stream no longer holds sequences {first_seq}-{next_seq - 1}, and the event "
                               f"store's event after them is {following.position}, not the stream's next "
                               f"({next_position}): the stream does not hold the store's events in order")
        log.warning("the stream no longer holds sequences %d-%d: applying %d of them from the event store "
                    "(positions %s-%s)", first_seq, next_seq - 1, len(filled), filled[0].position,
                    filled[-1].position)
        return filled
