"""Where the EVENTS stream stands: the last event store position the relay published into it.

Used by the relay (where to resume) and by the gateway's ``doctor`` (the relay's lag: the
store's position minus the stream's).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.subjects import EVENTS_STREAM, HEADER_POSITION

__all__ = ["StreamCursor", "read_cursor"]

log = logging.getLogger(__name__)


class StreamCursor(NamedTuple):
    """Where the stream stands: the last notification id in it, its last sequence, and the
    message id of the last message the relay published in this run (None right after a sync)."""

    position: int
    last_seq: int
    last_msg_id: str | None = None


async def read_cursor(js: JetStreamContext) -> StreamCursor:
    """Returns the last ``Berth-Position`` found in EVENTS (0 when there is none) and its last
    sequence. Messages without the header (not from the relay) are stepped over."""
    info = await js.stream_info(EVENTS_STREAM)
    last_seq = info.state.last_seq
    seq = last_seq
    while seq >= max(info.state.first_seq, 1):
        try:
            msg = await js.get_msg(EVENTS_STREAM, seq=seq)
        except NotFoundError:  # deleted message
            seq -= 1
            continue
        position = _position((msg.headers or {}).get(HEADER_POSITION))
        if position is not None:
            return StreamCursor(position, last_seq)
        if (last_seq - seq) % 1000 == 999:
            log.warning("still looking for the last Berth-Position in %s at sequence %d", EVENTS_STREAM, seq)
        seq -= 1
    return StreamCursor(0, last_seq)


def _position(raw: str | None) -> int | None:
    return int(raw) if raw is not None and raw.isdigit() else None
