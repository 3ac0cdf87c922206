"""A consumer whose NATS connection is closed for good ends its process, so that its supervisor starts it again.

nats-py reconnects without end (``bus.connect_options``) but not after ``close()`` or a protocol error of the
server (such as "maximum payload exceeded"): the connection is then closed for good (``bus.closed_for_good``), and
no retry can succeed. How a consumer learns it depends on its kind:

* a **pull** consumer's fetch raises ``ConnectionClosedError`` (``pull_batches.park_when_closed`` sets an event;
  ``pull_until`` raises);
* a **push** subscription (an ordered follow, ``flow.follow``; the projector's feed) hears nothing: nats-py ends
  its deliveries silently. Its process waited for ever, looking healthy, and was never started again. It looks
  at the connection every ``CLOSED_CHECK`` seconds instead (``follow_until``), or whenever it found nothing to do
  (``check_open``);
* a process that **serves** with the connection (the gateway: subscriptions, requests to agents) fails every use of
  it from then on while it goes on answering HTTP; it looks at the connection every ``CLOSED_CHECK`` seconds
  (``watch_until``).

Either way ``BusClosedError`` is raised, logged once; a service with a broker then stops it with ``stop_broker``
(faststream's stop raises for every subscriber it cannot unsubscribe and for the drain, hiding that error).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from nats.errors import ConnectionClosedError
from nats.js import JetStreamContext

from services.common.bus import closed_for_good
from services.common.waiting import first_of

if TYPE_CHECKING:  # the projector, which imports this module, runs without faststream
    from faststream.nats import NatsBroker

__all__ = ["BusClosedError", "CLOSED_CHECK", "check_open", "closed_as_bus_closed", "follow_until", "pull_until", "stop_broker", "watch_until"]

log = logging.getLogger(__name__)

CLOSED_CHECK = 1.0
"""Seconds between two looks at a followed connection (nats-py's own check of an ordered consumer's heartbeats
looks every two heartbeats: ``following.FOLLOW_HEARTBEAT``)."""


class BusClosedError(Exception):
    """Raised by a consumer (``flow.consume``, a follow, the projector's feed) whose NATS connection is closed for
    good: nats-py reconnects no more, so the process must end and its supervisor start it again."""


def _closed(consumer: str) -> BusClosedError:
    message = f"{consumer}: the NATS connection is closed for good (nats-py reconnects no more)"
    log.error("%s; ending, so that the process is started again", message)
    return BusClosedError(message)


async def pull_until(stop: asyncio.Event, closed: asyncio.Event, consumer: str) -> None:
    """Returns once ``stop`` is set; raises ``BusClosedError`` when ``closed`` (``pull_batches.mend_fetch``) is set
    first."""
    await first_of(stop, closed)
    if not stop.is_set():
        raise _closed(consumer)


@contextlib.contextmanager
def closed_as_bus_closed(js: JetStreamContext, consumer: str) -> Iterator[None]:
    """Raises ``BusClosedError`` for the ``ConnectionClosedError`` of a step on the connection of ``js`` once it is
    closed for good: a consumer whose connection is closed while it starts (creating its consumer, subscribing)
    ends as one closed while it pulls, not with nats-py's error (seen in ``test_follow_closed_bus``)."""
    try:
        yield
    except ConnectionClosedError as exc:
        if not closed_for_good(js):
            raise
        raise _closed(consumer) from exc


def check_open(js: JetStreamContext, consumer: str) -> None:
    """Raises ``BusClosedError`` when the connection of ``js`` is closed for good."""
    if closed_for_good(js):
        raise _closed(consumer)


async def follow_until(stop: asyncio.Event, js: JetStreamContext, consumer: str, *,
                       every: float = CLOSED_CHECK) -> None:
    """Returns once ``stop`` is set; raises ``BusClosedError`` when the connection of ``js``, which the push
    subscriptions of ``consumer`` use, is closed for good first (looked at every ``every`` seconds)."""
    await watch_until(stop, lambda: closed_for_good(js), consumer, every=every)


async def watch_until(stop: asyncio.Event, closed: Callable[[], bool], user: str, *,
                      every: float = CLOSED_CHECK) -> None:
    """Returns once ``stop`` is set; raises ``BusClosedError`` when ``closed()`` (is the connection ``user`` needs
    closed for good?) says True first, asked every ``every`` seconds. For a process whose connection is opened
    later, or by another part (the gateway's, on first use: ``Resources.bus_closed``)."""
    while not stop.is_set():
        if closed():
            raise _closed(user)
        await first_of(stop, timeout=every)


async def stop_broker(broker: NatsBroker) -> None:
    """Stops ``broker`` (``flow.open_broker``); when its connection is closed for good there is nothing to
    unsubscribe nor drain, and faststream's ``ConnectionClosedError`` (grouped, one per subscriber) is passed over."""
    try:
        await broker.stop()
    except* ConnectionClosedError:
        log.debug("the broker's connection was closed for good: nothing to stop")
