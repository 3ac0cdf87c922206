"""A service's event flow, declared as a table and run on faststream's NATS broker.

Each service declares its consumers as ``Subscription`` tables, **message class → handler**,
in its own ``flow.py``; the filter subjects are derived from the classes
(``contracts.subjects.event_filters`` / ``report_filters``), never typed. Two kinds:

* ``consume`` — a **durable** JetStream pull consumer with explicit ack. A handler that
  raises ``PermanentError`` (or a msgspec decode/validation error) sends the message straight
  to ``dlq.<durable>`` and terms it; an error that says PostgreSQL, NATS or Docker is away
  (``services.common.transient``) is retried in place with backoff, without limit, and never
  settled because of it; any other error is nak'ed with backoff and dead-lettered after the
  last try (``settler.Settler``). The server never drops a message (``max_deliver`` -1):
  nothing leaves the consumer but by an ack or a dead letter. The loop never stops on a bad
  message; a connection closed for good ends it (``bus_closed.BusClosedError``). With ``batch`` > 1 one
  handler gets every message of a fetch (to apply them in one transaction, say) and returns one
  outcome per message, settled the same way; with
  ``concurrent_by`` as well, each message goes to its own handler in the lane of its key
  (``services.common.lanes``): the lanes concurrently, each lane in order, the next fetch as soon as
  there is room (an agent starts several kernels at once, each kernel's events in order, and a
  slow start holds back only its own kernel).
* ``follow`` — an **ordered** (ephemeral, unacknowledged) consumer replaying the stream from its first message, for
  the in-memory views rebuilt at every start. ``caught_up`` is set once the history that existed at subscription time
  has been delivered; an event whose handler fails is followed again (it and all after it, after a backoff), never
  skipped. Its owner ends it once the connection is closed for good (nats-py says nothing: ``bus_closed``). The
  hot path of the platform, so it runs on nats-py's ordered consumer directly (figures in ``follow``'s docstring).

A handler is called as ``handler(target, message)`` — ``target`` being the object the
composition root hands over (a view, a use-case adapter) — plus ``last_attempt=`` for a durable
per-message handler; a batch handler gets the raw messages. faststream runs the durable pull
loops; acks stay in our hands (``AckPolicy.MANUAL``), messages reach us
undecoded (one msgspec decode, no pydantic).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import nats.errors
import nats.js.errors
from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.security import NatsCredentials
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy as JsAckPolicy, ConsumerConfig, DeliverPolicy

from contracts.catalog import decode_event
from services.common.bus import connect_options
from services.common.settler import ACK_WAIT, PermanentError, Settler
from services.common.following import Following
from services.common.subscription import Subscription
from services.common.lanes import Lanes, event_lane
from services.common.bus_closed import closed_as_bus_closed, pull_until
from services.common.pull_batches import mend_fetch
from services.common.js_reply import delivery_of

__all__ = ["BatchHandler", "Following", "PermanentError", "Subscription", "consume", "follow", "open_broker", "skip"]

log = logging.getLogger(__name__)

FETCH_WAIT = 0.5
"""Seconds a pull waits for a first message (one message at a time)."""
BATCH_WAIT = FETCH_WAIT
"""Seconds a batched pull waits for the first message of a batch; what else is there then is handed over with
it at once (``pull_batches.hand_over_available``), a batch never waits to fill, so this long poll adds no
latency: 0.1 s (from before the hand-over) cost an idle controller 20 empty pulls a second (~7 ms CPU/s)."""

BatchHandler = Callable[[Any, list[Msg]], Awaitable[Sequence[BaseException | None]]]
"""Returns, per message and in order, None when handled or the error it raised."""


def skip(target: Any, message: Any, **_: Any) -> None:
    """The handler of a message a consumer takes (its filter is a whole aggregate or context)
    but needs nothing from: acknowledged, nothing done."""


def open_broker(url: str, name: str, credentials: str | None = None) -> NatsBroker:
    """Returns a broker (not yet connected) that keeps reconnecting to ``url``, authenticated as
    ``bus.connect`` does. faststream logs to
    the ``faststream`` logger: its per-message lines at DEBUG (off by default; the handlers log
    what matters), its own errors (a consume task that failed and was restarted) as errors."""
    options = connect_options(url, name, credentials)
    creds = options.pop("user_credentials", None)
    return NatsBroker(options.pop("servers"), **options, security=NatsCredentials(creds) if creds else None,
                      logger=logging.getLogger("faststream"), log_level=logging.DEBUG, apply_types=False)


async def _undecoded(message: Any) -> Any:
    """faststream decoder: hands the handler faststream's message itself (we decode with msgspec).
    A coroutine: faststream would run a plain function in a worker thread, at every message."""
    return message


async def follow(
    js: JetStreamContext, subscription: Subscription, target: Any, caught_up: asyncio.Event, *, start_seq: int | None = None, **ids: str
) -> Following:
    """Calls the handler of each event of ``subscription``, oldest first (from ``start_seq`` when given: the tail
    after a checkpoint), and sets ``caught_up`` once the history that existed at subscription time has been delivered. Returns the running
    follow (``await following.stop()`` ends it). An event whose handler fails is retried, with
    everything after it, never skipped (``Following``).

    Runs on nats-py's ordered consumer, not on faststream: a follow replays the whole history at
    every start and then sees every event of its contexts (the scheduler's snapshot is the
    busiest consumer of the platform), and faststream's per-message path cost about 80 µs an
    event against 20 µs here; with it the scheduling benchmark placed 0.74x and reached RUNNING
    0.86x as fast (ops/bench/bench_scheduling.py, 500 agents, 10,000 sessions, same machine and
    run). The table, its derived filters and its AsyncAPI entry are the same either way."""
    following = Following(js, subscription, target, caught_up, ids)
    await following.start(start_seq)
    return following


async def consume(
    broker: NatsBroker, js: JetStreamContext, subscription: Subscription, target: Any, stop: asyncio.Event,
    **ids: str,
) -> None:
    """Runs the durable consumer of ``subscription`` until ``stop`` is set; raises ``bus_closed.BusClosedError``
    when its connection is closed for good (the process must end and be started again)."""
    durable = subscription.consumer_name(**ids)
    filters = subscription.filters(**ids)
    config = ConsumerConfig(
        durable_name=durable,
        name=durable if subscription.named else None,
        ack_policy=JsAckPolicy.EXPLICIT,
        max_deliver=-1,  # the server never drops a message: Settler dead-letters it
        ack_wait=ACK_WAIT,
        deliver_policy=DeliverPolicy.ALL,
        **({"filter_subject": filters[0]} if len(filters) == 1 else {"filter_subjects": list(filters)}),
    )
    with closed_as_bus_closed(js, durable):  # closed for good while it starts: ended as while it pulls
        subscriber, lanes = await _start_pull(broker, js, subscription, target, stop, config, filters[0])
        closed = mend_fetch(subscriber.subscription, batched=subscription.batch > 1)  # type: ignore[attr-defined]
    try:
        await pull_until(stop, closed, durable)
    finally:
        with contextlib.suppress(nats.errors.ConnectionClosedError):  # closed for good: nothing to unsubscribe
            await subscriber.stop()
        if lanes is not None:
            await lanes.close()


async def _start_pull(broker: NatsBroker, js: JetStreamContext, subscription: Subscription, target: Any,
                      stop: asyncio.Event, config: ConsumerConfig, subject: str) -> tuple[Any, Lanes | None]:
    """Creates (or updates) the durable consumer of ``config`` and starts faststream's pull loop on it (bound to
    ``subject``, its first filter), each fetch's messages settled by ``Settler``; returns the started subscriber
    and its lanes (``concurrent_by``; else None)."""
    durable = config.durable_name or ""
    await _update_consumer(js, subscription.stream, config)
    settle = Settler(js, durable, subscription.max_deliver, subscription.backoff, stop)
    routes = subscription.routes

    async def attempt_one(messages: list[Msg]) -> Sequence[BaseException | None]:
        return [await _outcome(routes, target, msg, subscription.max_deliver) for msg in messages]

    lanes: Lanes | None = None
    if subscription.concurrent_by is not None:
        lanes = running = Lanes(subscription.batch, event_lane(subscription.concurrent_by),
                                lambda msg: settle.run([msg], attempt_one))

        async def handle(message: Any) -> None:
            await running.accept(list(message.raw_message))  # returns while slow lanes go on

        pull = PullSub(batch_size=subscription.batch, timeout=FETCH_WAIT, batch=True)
    elif subscription.batch > 1:
        batch_handler = next(iter(subscription.routes.values()))

        async def attempt_batch(messages: list[Msg]) -> Sequence[BaseException | None]:
            try:
                return await batch_handler(target, messages)
            except Exception as exc:  # noqa: BLE001 - the whole batch failed: settled message by message
                return [exc] * len(messages)

        async def handle(message: Any) -> None:
            await settle.run(list(message.raw_message), attempt_batch)

        pull = PullSub(batch_size=subscription.batch, timeout=BATCH_WAIT, batch=True)
    else:
        async def handle(message: Any) -> None:
            await settle.run([message.raw_message], attempt_one)

        pull = PullSub(batch_size=1, timeout=FETCH_WAIT)
    subscriber = broker.subscriber(
        subject, stream=JStream(subscription.stream, declare=False), durable=durable, config=config,
        pull_sub=pull, ack_policy=AckPolicy.MANUAL, decoder=_undecoded, persistent=False,
        include_in_schema=False,
        inbox_prefix=None,  # nats-py's default: the connection's own prefix (faststream's is _INBOX)
    )
    subscriber(handle)
    await subscriber.start()
    return subscriber, lanes


async def _update_consumer(js: JetStreamContext, stream: str, config: ConsumerConfig) -> None:
    """Creates the durable consumer, or brings an existing one to ``config`` (one created by an
    older version kept its ``max_deliver``, after which the server dropped a message silently);
    the pull subscription then binds to it as it is."""
    try:
        await js.add_consumer(stream, config=config)
    except nats.js.errors.BadRequestError as exc:
        log.warning("consumer %s keeps its configuration: %s", config.durable_name, exc)


async def _outcome(routes: Mapping[type, Callable[..., Any]], target: Any, msg: Msg, max_deliver: int) -> BaseException | None:
    try:
        event = decode_event(msg.data)
        handler = routes.get(type(event))
        if handler is None:
            raise PermanentError(f"{event.type_name()} is not routed here")
        result = handler(target, event, last_attempt=delivery_of(msg).num_delivered >= max_deliver)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:  # noqa: BLE001 - settled by Settler
        return exc
    return None
