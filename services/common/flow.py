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
import string
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.security import NatsCredentials
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy as JsAckPolicy, ConsumerConfig, DeliverPolicy

from contracts.catalog import decode_event
from contracts.envelope import Event
from contracts.reports import Report
from contracts.subjects import event_filters, report_filters
from contracts.storage_reports import StorageReport
from services.common import transient
from services.common.bus import connect_options
from services.common.settler import ACK_WAIT, PermanentError, Settler
from services.common.transient import NATS, OUTAGES, unavailable_dependency
from services.common.lanes import Lanes, event_lane
from services.common.bus_closed import pull_until
from services.common.pull_batches import mend_fetch
from services.common.js_reply import delivery_of

__all__ = ["BatchHandler", "PermanentError", "Subscription", "consume", "follow", "open_broker", "skip"]

log = logging.getLogger(__name__)

BACKOFF = (0.1, 0.5, 2.0, 5.0)
"""Delays before the next try of a message whose handler failed (not for a dependency outage)."""
FETCH_WAIT = 0.5
"""Seconds a pull waits for a first message (one message at a time)."""
BATCH_WAIT = 0.1
"""Seconds a batched pull waits for a batch's first message (the rest is handed over at once: ``pull_batches``).
0.5 s would save an idle controller ~7 ms CPU/s, but a CI run with it once saw the controller not end on a closed
connection (``test_follow_closed_bus.py``), cause not found: kept at 0.1 s until it is."""

FOLLOW_HEARTBEAT = 1.0
"""Seconds between the server's idle heartbeats to an ordered follow: two missed ones make
nats-py start the consumer again where it was (after a NATS restart, say: ≈2 s instead of ≈17 s
with its default of 5 s; measured in tests/integration/test_flow_nats_restart.py)."""

BatchHandler = Callable[[Any, list[Msg]], Awaitable[Sequence[BaseException | None]]]
"""Returns, per message and in order, None when handled or the error it raised."""


def skip(target: Any, message: Any, **_: Any) -> None:
    """The handler of a message a consumer takes (its filter is a whole aggregate or context)
    but needs nothing from: acknowledged, nothing done."""


@dataclass(frozen=True)
class Subscription:
    """One consumer of a service: the classes of the messages it takes, the handler of each,
    and the classes of its contexts it deliberately leaves out (``ignored``: not subscribed)."""

    name: str
    """The durable consumer's name (a ``str.format`` template of the ids given at start), or
    the name of an ordered one (logs, AsyncAPI)."""
    stream: str
    routes: Mapping[type, Callable[..., Any]]
    ignored: tuple[type, ...] = ()
    durable: bool = False
    batch: int = 1
    """> 1: fetches up to ``batch`` messages and hands them all to the one handler of the routes (or,
    with ``concurrent_by``, each to its own handler in its lane, at most ``batch`` held at once)."""
    concurrent_by: Callable[[Any], Hashable] | None = None
    """With ``batch`` > 1: the key of a decoded message, its lane (``services.common.lanes``): messages
    with different keys are handled concurrently, those with the same key one after the other in
    stream order; the next fetch waits only for room, never for a slow lane."""
    aggregate: str = "*"
    """The aggregate id of the events taken (a template such as ``{agent_id}``); ``*``: all."""
    max_deliver: int = 5
    """Tries of a message whose handler fails (not counting tries while a dependency is away)
    before it is dead-lettered."""
    backoff: tuple[float, ...] = BACKOFF
    description: str = ""
    named: bool = False
    """Creates the consumer under its name with its one filter in the API subject
    (``$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>``), so that a permission can allow this
    consumer and no other (an agent's identity: ``services.common.bus_identities``)."""
    reports: bool = field(init=False)

    def __post_init__(self) -> None:
        kinds = {issubclass(cls, (Report, StorageReport)) for cls in self.routes}
        if len(kinds) != 1 or not all(issubclass(cls, (Event, Report, StorageReport)) for cls in self.routes):
            raise ValueError(f"{self.name}: routes must be all events or all reports")
        object.__setattr__(self, "reports", kinds == {True})
        if set(self.routes) & set(self.ignored):
            raise ValueError(f"{self.name}: a class both routed and ignored")
        if self.batch > 1 and self.concurrent_by is None and len(set(self.routes.values())) != 1:
            raise ValueError(f"{self.name}: a batched subscription has one handler (or a concurrent_by key)")
        if self.concurrent_by is not None and self.batch < 2:
            raise ValueError(f"{self.name}: concurrent_by needs a batch of at least 2")
        if self.batch > 1 and not self.durable:
            raise ValueError(f"{self.name}: only a durable subscription is batched")
        if self.named and len(self.filters(**dict.fromkeys(_template_ids(self.aggregate), "x"))) != 1:
            raise ValueError(f"{self.name}: a named consumer takes one filter subject (route its whole aggregate)")

    def consumer_name(self, **ids: str) -> str:
        return self.name.format(**ids)

    def filters(self, **ids: str) -> tuple[str, ...]:
        """Returns the filter subjects of the consumer, derived from the routed classes."""
        if self.reports:
            return report_filters(self.routes)
        return event_filters(self.routes, self.aggregate.format(**ids))


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


def _template_ids(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


class Following:
    """A running ordered follow of one subscription; ``await following.stop()`` ends it.

    An event whose handler fails is never skipped: the ordered consumer is dropped, and after a backoff a new
    one starts at that event's stream sequence, so the view gets the event again and everything after it in
    order (a handler that failed half-way must therefore tolerate being called again with the same event).
    Until then the failure is in ``OUTAGES`` (the health answer) and logged. Only an event this version cannot
    decode is logged as an error and passed over: no retry can decode it. A ``named`` subscription's consumer
    is created under its name with its one filter (its identity may create no other) and deleted when the
    follow stops or starts again (it would otherwise outlive it for the server's inactivity threshold)."""

    def __init__(self, js: JetStreamContext, subscription: Subscription, target: Any, caught_up: asyncio.Event,
                 ids: Mapping[str, str]) -> None:
        self._js = js
        self._subscription = subscription
        self._target = target
        self._caught_up = caught_up
        self._filters = list(subscription.filters(**ids))
        self._name = subscription.consumer_name(**ids)
        self._named = self._name if subscription.named else None
        self._sub: JetStreamContext.PushSubscription | None = None
        self._resyncing = False
        """True from a failed event until the follow starts again at it (deliveries ignored)."""
        self._restarting: asyncio.Task[None] | None = None
        self._stopped = False
        self._tries = 0
        self.resyncs = 0
        """How many times the follow started again at an event that had failed (tests, logs)."""
        self.position = self.delivered = 0
        """The stream sequence of the last message handled or passed over (what a checkpoint reflects); messages received."""

    async def start(self, start_seq: int | None = None) -> None:
        """Subscribes from the first event (or ``start_seq``) of the stream."""
        self.position = self.position or (start_seq or 1) - 1
        policy = {"deliver_policy": DeliverPolicy.ALL if start_seq is None else DeliverPolicy.BY_START_SEQUENCE}
        config = (ConsumerConfig(name=self._named, filter_subject=self._filters[0], opt_start_seq=start_seq, **policy)
                  if self._named else ConsumerConfig(filter_subjects=self._filters, opt_start_seq=start_seq, **policy))
        self._sub = await self._js.subscribe(self._filters[0], stream=self._subscription.stream, cb=self._deliver,
                                             ordered_consumer=True, idle_heartbeat=FOLLOW_HEARTBEAT, config=config,
                                             **policy)
        info = await self._sub.consumer_info()
        if info.num_pending == 0 and info.delivered.consumer_seq == 0:  # nothing to catch up on
            self._caught_up.set()

    async def stop(self) -> None:
        self._stopped = True
        OUTAGES.forget(self._name)
        if self._restarting is not None:
            self._restarting.cancel()
            await asyncio.gather(self._restarting, return_exceptions=True)
        if self._sub is not None:
            with contextlib.suppress(nats.errors.ConnectionClosedError):  # closed for good: nothing to unsubscribe
                await self._sub.unsubscribe()
            self._sub = None
        await self._delete_named()

    async def _delete_named(self) -> None:
        if self._named is not None:  # gone already, or NATS unreachable: the server expires it when inactive
            with contextlib.suppress(nats.errors.Error):
                await self._js.delete_consumer(self._subscription.stream, self._named)

    async def _deliver(self, msg: Msg) -> None:
        if self._resyncing or self._stopped:
            return  # still queued by the subscription being dropped: delivered again after the resync
        self.delivered += 1
        delivery = delivery_of(msg)
        try:
            event = decode_event(msg.data)
            handler = self._subscription.routes.get(type(event))
            if handler is not None:
                result = handler(self._target, event)
                if inspect.isawaitable(result):
                    await result
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("%s: passing over an event this version cannot decode at stream sequence %d (%s): %s",
                      self._name, delivery.stream_seq, msg.subject, exc)
        except Exception as exc:  # noqa: BLE001 - retried from this event on, never skipped
            self._failed(msg, exc)
            return
        self.position = delivery.stream_seq
        if self._tries:
            self._tries = 0
            OUTAGES.recovered(self._name)
        if delivery.num_pending == 0:
            self._caught_up.set()

    def _failed(self, msg: Msg, error: Exception) -> None:
        self._tries += 1
        seq = msg.metadata.sequence.stream
        if self._tries == 1 and unavailable_dependency(error) is None:
            log.error("%s: applying the event at stream sequence %d (%s) failed; following again from it",
                      self._name, seq, msg.subject, exc_info=error)
        OUTAGES.failed(self._name, unavailable_dependency(error) or f"its event at stream sequence {seq}", error)
        self._resyncing = True
        self._restarting = asyncio.create_task(self._restart(seq), name=f"resync-{self._name}")

    async def _restart(self, seq: int) -> None:
        await asyncio.sleep(transient.backoff(self._tries))
        while not self._stopped:
            try:
                if self._sub is not None:
                    sub, self._sub = self._sub, None
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
                await self._delete_named()
                self._resyncing = False
                self.resyncs += 1
                await self.start(seq)
                return
            except Exception as exc:  # noqa: BLE001 - NATS away: try again
                self._resyncing = True
                self._tries += 1
                OUTAGES.failed(self._name, unavailable_dependency(exc) or NATS, exc)
                await asyncio.sleep(transient.backoff(self._tries))


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
        filters[0], stream=JStream(subscription.stream, declare=False), durable=durable, config=config,
        pull_sub=pull, ack_policy=AckPolicy.MANUAL, decoder=_undecoded, persistent=False,
        include_in_schema=False,
        inbox_prefix=None,  # nats-py's default: the connection's own prefix (faststream's is _INBOX)
    )
    subscriber(handle)
    await subscriber.start()
    closed = mend_fetch(subscriber.subscription, batched=subscription.batch > 1)  # type: ignore[attr-defined]
    try:
        await pull_until(stop, closed, durable)
    finally:
        with contextlib.suppress(nats.errors.ConnectionClosedError):  # closed for good: nothing to unsubscribe
            await subscriber.stop()
        if lanes is not None:
            await lanes.close()


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
