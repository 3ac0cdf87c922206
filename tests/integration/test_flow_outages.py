"""services.common.flow while a dependency is away, on real NATS and PostgreSQL: a message whose
handler cannot reach PostgreSQL (a TCP proxy the test closes) is retried for as long as it takes,
never acknowledged, nak'ed to death or dead-lettered, and applied exactly once when PostgreSQL is
back; a poison message lands in the dead letters with its reason, subject and delivery count;
nothing is left to the server's ``max_deliver``; an ordered follow whose handler failed follows
again from the failed event, skipping nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from nats.js import JetStreamContext

from contracts import agent as ev
from contracts.catalog import decode_event
from contracts.envelope import Event
from contracts.subjects import (
    EVENTS_STREAM,
    HEADER_CONSUMER,
    HEADER_DEAD_LETTERED_AT,
    HEADER_DELIVERIES,
    HEADER_ERROR,
    HEADER_ORIGINAL_SUBJECT,
    event_subject,
)
from services.common.flow import PermanentError, Subscription
from services.common.transient import OUTAGES
from tests.integration.test_flow import assigned, async_wait_for_letters, dead_letters, following, publish, running
from tests.support.tcp_proxy import tcp_proxy
from tests.support.waiting import async_wait_for

OLD_TRIES = 5
"""The consumer gave up after five tries (about 8 s of backoff) before transient errors were told apart."""


class Applier:
    """A handler target that records each kernel in PostgreSQL (through ``dsn``), once: a second
    insert of the same kernel would violate the primary key."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.attempts = 0
        self.applied: list[str] = []

    async def handle(self, event: Event, *, last_attempt: bool = False) -> None:
        self.attempts += 1
        kernel = event.kernel_id  # type: ignore[attr-defined]
        if kernel.startswith("bad-"):
            raise PermanentError("violates an invariant")
        async with await psycopg.AsyncConnection.connect(self.dsn, connect_timeout=2) as conn:
            await conn.execute("INSERT INTO applied (kernel) VALUES (%s)", (kernel,))
        self.applied.append(kernel)

    async def batch(self, messages: list[Any]) -> list[BaseException | None]:
        """Applies every message in one transaction (raising when PostgreSQL is away)."""
        kernels = [decode_event(m.data).kernel_id for m in messages]  # type: ignore[attr-defined]
        self.attempts += 1
        async with await psycopg.AsyncConnection.connect(self.dsn, connect_timeout=2) as conn:
            async with conn.cursor() as cur:
                await cur.executemany("INSERT INTO applied (kernel) VALUES (%s)", [(k,) for k in kernels])
        self.applied += kernels
        return [None] * len(messages)


def table(**kw: Any) -> Subscription:
    routes = {ev.KernelAssigned: (Applier.batch if kw.get("batch", 1) > 1 else Applier.handle)}
    return Subscription(name="outagetest-{agent_id}", stream=EVENTS_STREAM, durable=True, aggregate="{agent_id}",
                        routes=routes, backoff=(0.05,), **kw)


async def rows(dsn: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute("SELECT kernel FROM applied ORDER BY kernel")
        return [row[0] for row in await cur.fetchall()]


async def create_table(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("CREATE TABLE applied (kernel text PRIMARY KEY)")


def outage_tries(component: str) -> int:
    return next((o.tries for o in OUTAGES.current() if o.component == component), 0)


async def applied_once_after_an_outage(nats_url: str, js: JetStreamContext, pg_dsn: str, sub: Subscription,
                                       kernels: list[str]) -> Applier:
    await create_table(pg_dsn)
    async with tcp_proxy(pg_dsn) as proxy:
        target = Applier(proxy.url(pg_dsn))
        await proxy.close()  # PostgreSQL goes away before the messages come
        await publish(js, [assigned("a1", i + 1, k) for i, k in enumerate(kernels)])
        async with running(nats_url, js, sub, target):
            await async_wait_for(lambda: outage_tries("outagetest-a1") > OLD_TRIES + 1, timeout=60,
                                 message="the consumer retries while PostgreSQL is away")
            assert target.applied == [] and await dead_letters(js, "outagetest-a1") == []
            await proxy.open()  # PostgreSQL is back
            await async_wait_for(lambda: sorted(target.applied) == sorted(kernels), timeout=30,
                                 message=f"applied after the outage: {target.applied}")
            await async_wait_for(lambda: outage_tries("outagetest-a1") == 0, timeout=10, message="outage cleared")

            async def acknowledged() -> bool:  # read again at each poll: the last ack may still be on its way
                return (await js.consumer_info(EVENTS_STREAM, "outagetest-a1")).num_ack_pending == 0

            await async_wait_for(acknowledged, timeout=10, message="all acknowledged")
    assert await rows(pg_dsn) == sorted(kernels), "applied exactly once"
    assert await dead_letters(js, "outagetest-a1") == [], "an outage is not poison"
    return target


async def test_a_message_is_retried_while_postgresql_is_away_and_applied_once_after(
        nats_url: str, js: JetStreamContext, pg_dsn: str) -> None:
    target = await applied_once_after_an_outage(nats_url, js, pg_dsn, table(max_deliver=3), ["k-1"])
    assert target.attempts > OLD_TRIES + 1


async def test_a_batch_is_retried_while_postgresql_is_away_and_applied_once_after(
        nats_url: str, js: JetStreamContext, pg_dsn: str) -> None:
    """The batch handler raising (the controller's report path on a database error) is retried, not
    left to be redelivered until the server's max_deliver drops it."""
    await applied_once_after_an_outage(nats_url, js, pg_dsn, table(batch=16, max_deliver=3),
                                       [f"k-{i}" for i in range(5)])


async def test_a_poison_message_is_dead_lettered_with_reason_subject_and_deliveries(
        nats_url: str, js: JetStreamContext, pg_dsn: str) -> None:
    await create_table(pg_dsn)
    target = Applier(pg_dsn)
    await publish(js, [assigned("a1", 1, "bad-1"), assigned("a1", 2, "ok-2")])
    async with running(nats_url, js, table(max_deliver=3), target):
        letters = await async_wait_for_letters(js, "outagetest-a1", 1)
        await async_wait_for(lambda: target.applied == ["ok-2"], timeout=30, message="the next one is handled")
        info = await js.consumer_info(EVENTS_STREAM, "outagetest-a1")
    headers = letters[0].headers
    assert headers[HEADER_ERROR] == "PermanentError: violates an invariant"
    assert headers[HEADER_ORIGINAL_SUBJECT] == event_subject("agent.kernel_assigned", "a1")
    assert headers[HEADER_DELIVERIES] == "1"
    assert headers[HEADER_CONSUMER] == "outagetest-a1"
    assert headers[HEADER_DEAD_LETTERED_AT].endswith("+00:00")
    assert info.config.max_deliver == -1, "the server never drops a message: the settler dead-letters it"


async def test_an_older_consumer_is_brought_to_the_current_configuration(nats_url: str, js: JetStreamContext,
                                                                        pg_dsn: str) -> None:
    """A durable created with a bounded max_deliver (whose server dropped a message silently after
    the last try) is updated at start."""
    from nats.js.api import AckPolicy, ConsumerConfig

    await js.add_consumer(EVENTS_STREAM, ConsumerConfig(
        durable_name="outagetest-a1", ack_policy=AckPolicy.EXPLICIT, max_deliver=6,
        filter_subject=table().filters(agent_id="a1")[0]))
    await create_table(pg_dsn)

    async def unbounded() -> bool:
        return (await js.consumer_info(EVENTS_STREAM, "outagetest-a1")).config.max_deliver == -1

    async with running(nats_url, js, table(), Applier(pg_dsn)):
        # the consumer starts in a task of its own: its configuration is updated once that task has run
        await async_wait_for(unbounded, timeout=30, message="the durable kept its bounded max_deliver")


async def test_a_follow_whose_handler_failed_follows_again_from_that_event(nats_url: str,
                                                                           js: JetStreamContext) -> None:
    seen: list[str] = []
    failures = {"bad-2": 3}

    def apply(target: list[str], event: Event) -> None:
        kernel = event.kernel_id  # type: ignore[attr-defined]
        if failures.get(kernel, 0) > 0:
            failures[kernel] -= 1
            raise RuntimeError("the view cannot take it yet")
        target.append(kernel)

    await publish(js, [assigned("a1", 1, "ok-1"), assigned("a1", 2, "bad-2"), assigned("a1", 3, "ok-3")])
    view = Subscription(name="outagetest-view", stream=EVENTS_STREAM, routes={ev.KernelAssigned: apply})
    async with following(js, view, seen) as (running_follow, caught_up):
        await asyncio.wait_for(caught_up.wait(), 60)
        assert seen == ["ok-1", "bad-2", "ok-3"], "nothing skipped, nothing twice, in order"
        assert running_follow.resyncs == 3
        assert outage_tries("outagetest-view") == 0
        await publish(js, [assigned("a1", 4, "ok-4")])
        await async_wait_for(lambda: seen[-1:] == ["ok-4"], timeout=30, message=f"live events: {seen}")


async def test_a_follow_stays_at_an_event_it_cannot_apply_and_says_so(nats_url: str, js: JetStreamContext) -> None:
    seen: list[str] = []

    def apply(target: list[str], event: Event) -> None:
        if event.kernel_id.startswith("bad-"):  # type: ignore[attr-defined]
            raise RuntimeError("a bug in the view")
        target.append(event.kernel_id)  # type: ignore[attr-defined]

    await publish(js, [assigned("a1", 1, "ok-1"), assigned("a1", 2, "bad-2"), assigned("a1", 3, "ok-3")])
    view = Subscription(name="outagetest-stuck", stream=EVENTS_STREAM, routes={ev.KernelAssigned: apply})
    async with following(js, view, seen) as (_, caught_up):
        await async_wait_for(lambda: outage_tries("outagetest-stuck") >= 3, timeout=30, message="retried")
        assert seen == ["ok-1"] and not caught_up.is_set(), "the view does not go past the event"
        assert any("outagetest-stuck" in line and "RuntimeError: a bug in the view" in line
                   for line in OUTAGES.describe())
    assert outage_tries("outagetest-stuck") == 0, "forgotten when stopped"


async def test_a_message_whose_consumer_keeps_dying_is_dead_lettered(nats_url: str, js: JetStreamContext,
                                                                    pg_dsn: str, monkeypatch: Any) -> None:
    """A consumer that died each time it handled a message (here: fetched twice and never settled,
    as a killed process leaves it) does not get it for ever: beyond max_deliver + SETTLE_SLACK
    deliveries it is dead-lettered before it is handled again."""
    from nats.js.api import AckPolicy, ConsumerConfig

    from services.common import settler

    monkeypatch.setattr(settler, "SETTLE_SLACK", 1)
    sub = table(max_deliver=1)
    await js.add_consumer(EVENTS_STREAM, ConsumerConfig(
        durable_name="outagetest-a1", ack_policy=AckPolicy.EXPLICIT, ack_wait=1, max_deliver=-1,
        filter_subject=sub.filters(agent_id="a1")[0]))
    await publish(js, [assigned("a1", 1, "k-1")])
    dying = await js.pull_subscribe_bind("outagetest-a1", stream=EVENTS_STREAM)
    for delivery in (1, 2):  # two lives that took the message and died with it
        (msg,) = await async_wait_for(lambda: _fetch_one(dying), timeout=30, message=f"delivery {delivery}")
        assert msg.metadata.num_delivered == delivery
    await msg.nak()  # the second gives it back as it goes (else the next delivery waits for the new ack_wait)
    await dying.unsubscribe()
    await create_table(pg_dsn)
    target = Applier(pg_dsn)
    async with running(nats_url, js, sub, target):
        (letter,) = await async_wait_for_letters(js, "outagetest-a1", 1)
    assert target.attempts == 0, "not handled a third time"
    assert letter.headers[HEADER_DELIVERIES] == "3"
    assert "delivered 3 times without being settled" in letter.headers[HEADER_ERROR]


async def _fetch_one(sub: Any) -> list[Any]:
    try:
        return await sub.fetch(1, timeout=0.5)
    except Exception:  # noqa: BLE001 - not redelivered yet
        return []
