"""A service's event flow, declared as a table and run on faststream's NATS broker.

Each service declares its consumers as ``Subscription`` tables, **message class → handler**,
in its own ``flow.py``; the filter subjects are derived from the classes
(``contracts.subjects.event_filters`` / ``report_filters``), never typed. Two kinds:

* ``consume`` — a **durable** JetStream pull consumer with explicit ack. A handler that
  raises ``PermanentError`` (or a msgspec decode/validation error) sends the message straight
  to ``dlq.<durable>`` and terms it; any other error is nak'ed with backoff and dead-lettered
  after the last try. The loop never stops on a bad message. With ``batch`` > 1 one handler
  gets every message of a fetch (to apply them in one transaction, say) and returns one
  outcome per message, settled the same way.
* ``follow`` — an **ordered** (ephemeral, unacknowledged) consumer replaying the stream from
  its first message, for the in-memory views rebuilt at every start. ``caught_up`` is set once
  the history that existed at subscription time has been delivered; one bad event is logged
  and skipped, never stopping the view. The hot path of the platform, so it runs on nats-py's
  ordered consumer directly (figures in ``follow``'s docstring).

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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats.errors
from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.security import NatsCredentials
from faststream.nats.subscriber.usecases import LogicSubscriber
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts.catalog import decode_event
from contracts.envelope import Event
from contracts.reports import Report
from contracts.subjects import event_filters, report_filters
from contracts.vfolder import StorageReport
from services.common.bus import connect_options, dead_letter

__all__ = ["BatchHandler", "PermanentError", "Subscription", "consume", "follow", "open_broker", "skip"]

log = logging.getLogger(__name__)

BACKOFF = (0.1, 0.5, 2.0, 5.0)
FETCH_WAIT = 0.5
"""Seconds a pull waits for a first message (one message at a time)."""
BATCH_WAIT = 0.1
"""Seconds faststream's batch pull waits to fill a batch before handing over what it has."""

BatchHandler = Callable[[Any, list[Msg]], Awaitable[Sequence[BaseException | None]]]
"""Returns, per message and in order, None when handled or the error it raised."""


class PermanentError(Exception):
    """Raised by a handler when a message can never be processed (it goes to the dead letters)."""


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
    """> 1: fetches up to ``batch`` messages and hands them all to the one handler of the routes."""
    aggregate: str = "*"
    """The aggregate id of the events taken (a template such as ``{agent_id}``); ``*``: all."""
    max_deliver: int = 5
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
        if self.batch > 1 and len(set(self.routes.values())) != 1:
            raise ValueError(f"{self.name}: a batched subscription has one handler")
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
    """A running ordered follow; ``await following.stop()`` ends it (and deletes a named consumer,
    which would otherwise outlive it for the server's inactivity threshold)."""

    def __init__(self, subscription: JetStreamContext.PushSubscription, js: JetStreamContext,
                 stream: str, named: str | None = None) -> None:
        self._subscription = subscription
        self._js, self._stream, self._named = js, stream, named

    async def stop(self) -> None:
        await self._subscription.unsubscribe()
        if self._named is not None:  # gone already, or NATS unreachable: the server expires it when inactive
            with contextlib.suppress(nats.errors.Error):
                await self._js.delete_consumer(self._stream, self._named)


async def follow(
    js: JetStreamContext, subscription: Subscription, target: Any, caught_up: asyncio.Event, **ids: str
) -> Following:
    """Calls the handler of each event of ``subscription``, oldest first, and sets ``caught_up``
    once the history that existed at subscription time has been delivered. Returns the running
    follow (``await following.stop()`` ends it).

    Runs on nats-py's ordered consumer, not on faststream: a follow replays the whole history at
    every start and then sees every event of its contexts (the scheduler's snapshot is the
    busiest consumer of the platform), and faststream's per-message path cost about 80 µs an
    event against 20 µs here; with it the scheduling benchmark placed 0.74x and reached RUNNING
    0.86x as fast (ops/bench/bench_scheduling.py, 500 agents, 10,000 sessions, same machine and
    run). The table, its derived filters and its AsyncAPI entry are the same either way."""
    routes = subscription.routes

    async def deliver(msg: Msg) -> None:
        try:
            event = decode_event(msg.data)
            handler = routes.get(type(event))
            if handler is not None:
                result = handler(target, event)
                if inspect.isawaitable(result):
                    await result
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("skipping an undecodable event on %s: %s", msg.subject, exc)
        except Exception:  # noqa: BLE001 - one bad event must not stop the view
            log.exception("failed to apply the event on %s", msg.subject)
        if msg.metadata.num_pending == 0:
            caught_up.set()

    filters = list(subscription.filters(**ids))
    name = subscription.consumer_name(**ids) if subscription.named else None
    config = ConsumerConfig(name=name, filter_subject=filters[0]) if name else ConsumerConfig(filter_subjects=filters)
    sub = await js.subscribe(
        filters[0], stream=subscription.stream, cb=deliver, ordered_consumer=True,
        config=config, deliver_policy=DeliverPolicy.ALL,
    )
    info = await sub.consumer_info()
    if info.num_pending == 0 and info.delivered.consumer_seq == 0:  # nothing to catch up on
        caught_up.set()
    return Following(sub, js, subscription.stream, name)


async def consume(
    broker: NatsBroker, js: JetStreamContext, subscription: Subscription, target: Any, stop: asyncio.Event,
    **ids: str,
) -> None:
    """Runs the durable consumer of ``subscription`` until ``stop`` is set."""
    durable = subscription.consumer_name(**ids)
    filters = subscription.filters(**ids)
    config = ConsumerConfig(
        durable_name=durable,
        name=durable if subscription.named else None,
        ack_policy=JsAckPolicy.EXPLICIT,
        max_deliver=subscription.max_deliver + 1,
        ack_wait=30,
        deliver_policy=DeliverPolicy.ALL,
        **({"filter_subject": filters[0]} if len(filters) == 1 else {"filter_subjects": list(filters)}),
    )
    settle = _Settler(js, durable, subscription.max_deliver, subscription.backoff)
    if subscription.batch > 1:
        batch_handler = next(iter(subscription.routes.values()))

        async def handle(message: Any) -> None:
            messages: list[Msg] = list(message.raw_message)
            outcomes = await batch_handler(target, messages)
            for msg, error in zip(messages, outcomes, strict=True):
                await settle(msg, error)

        pull = PullSub(batch_size=subscription.batch, timeout=BATCH_WAIT, batch=True)
    else:
        routes = subscription.routes

        async def handle(message: Any) -> None:
            msg: Msg = message.raw_message
            await settle(msg, await _outcome(routes, target, msg, subscription.max_deliver))

        pull = PullSub(batch_size=1, timeout=FETCH_WAIT)
    subscriber = broker.subscriber(
        filters[0], stream=JStream(subscription.stream, declare=False), durable=durable, config=config,
        pull_sub=pull, ack_policy=AckPolicy.MANUAL, decoder=_undecoded, persistent=False,
        include_in_schema=False,
        inbox_prefix=None,  # nats-py's default: the connection's own prefix (faststream's is _INBOX)
    )
    subscriber(handle)
    await subscriber.start()
    _fetch_timeouts_as_nats(subscriber)
    try:
        await stop.wait()
    finally:
        await subscriber.stop()


def _fetch_timeouts_as_nats(subscriber: LogicSubscriber[Any]) -> None:
    """Makes the pull subscription's ``fetch`` raise ``nats.errors.TimeoutError`` for every timeout.

    Since nats-py 2.15 (nats.py#934) ``fetch`` raises a plain ``asyncio.TimeoutError`` when its
    deadline ran out between two requests (nats.py#1008, open); faststream's pull loop catches only
    ``nats.errors.TimeoutError``, so its task died, was restarted by faststream's task supervisor,
    and the partial batch it had fetched was dropped unacknowledged: redelivered only after
    ``ack_wait`` (30 s). Seen under load as reports and kernel assignments arriving 30 s late;
    ``tests/unit/test_flow_fetch.py`` holds its test."""
    subscription = subscriber.subscription  # type: ignore[attr-defined]
    fetch = subscription.fetch

    async def fetch_with_nats_timeouts(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fetch(*args, **kwargs)
        except NatsTimeoutError:
            raise
        except asyncio.TimeoutError as exc:
            raise NatsTimeoutError from exc

    subscription.fetch = fetch_with_nats_timeouts


async def _outcome(routes: Mapping[type, Callable[..., Any]], target: Any, msg: Msg, max_deliver: int) -> BaseException | None:
    try:
        event = decode_event(msg.data)
        handler = routes.get(type(event))
        if handler is None:
            raise PermanentError(f"{event.type_name()} is not routed here")
        result = handler(target, event, last_attempt=msg.metadata.num_delivered >= max_deliver)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:  # noqa: BLE001 - settled by _Settler
        return exc
    return None


class _Settler:
    """Acks a handled message; dead-letters a permanent failure; retries any other with backoff,
    and dead-letters it after the last try."""

    def __init__(self, js: JetStreamContext, durable: str, max_deliver: int, backoff: Sequence[float]) -> None:
        self._js = js
        self._durable = durable
        self._max_deliver = max_deliver
        self._backoff = backoff

    async def __call__(self, msg: Msg, error: BaseException | None) -> None:
        if error is None:
            await msg.ack()
        elif isinstance(error, (PermanentError, msgspec.DecodeError, msgspec.ValidationError)):
            await dead_letter(self._js, self._durable, msg.subject, msg.data, f"{type(error).__name__}: {error}")
            await msg.term()
        else:
            delivered = msg.metadata.num_delivered
            if delivered >= self._max_deliver:
                await dead_letter(self._js, self._durable, msg.subject, msg.data,
                                  f"{type(error).__name__}: {error} (after {delivered} tries)")
                await msg.term()
            else:
                log.warning("%s: %s on %s; retry %d/%d", self._durable, error, msg.subject, delivered, self._max_deliver)
                await msg.nak(delay=self._backoff[min(delivered - 1, len(self._backoff) - 1)])
