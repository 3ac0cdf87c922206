"""The relay against a real NATS server and PostgreSQL: every event reaches EVENTS once, in
notification order, with its subject and headers, across restarts and failed publishes."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from nats.js.errors import BadRequestError

from contracts.subjects import HEADER_POSITION, event_subject
from services.common.bus import ensure_streams
from services.supervisor.embedded import NatsServer
from services.application.sessions import Sessions
from services.common.settings import Settings
from services.relay.main import run_relay
from services.relay.source import NotificationSource
from tests.support.relay import (  # noqa: F401
    jetstream,
    own_nats,
    request_sessions,
    run_until_stopped,
    sessions,
    settings,
    stop_task,
    store_ids,
    store_notifications,
    stream_count,
    stream_messages,
    stream_positions,
)
from tests.support.waiting import async_wait_for


async def test_every_event_arrives_in_order_with_subject_and_headers(settings: Settings, sessions: Sessions) -> None:
    await asyncio.to_thread(request_sessions, sessions, range(0, 120))
    stop, relay = await run_until_stopped(run_relay, settings)
    await asyncio.to_thread(request_sessions, sessions, range(120, 200))
    async with jetstream(settings.nats_url) as js:
        await async_wait_for(lambda: _has(js, 200), timeout=30, message="relay did not publish 200 events")
        messages = await stream_messages(js)
    await stop_task(stop, relay)

    stored = store_notifications(settings.pg_dsn)
    assert len(stored) == len(messages) == 200
    previous = None
    for (notification_id, topic, originator_id, state), msg in zip(stored, messages):
        assert msg.subject == event_subject(topic, originator_id)
        assert msg.data == state
        assert msg.headers["Nats-Msg-Id"] == msg.headers[HEADER_POSITION] == str(notification_id)
        if previous is not None:
            assert msg.headers["Nats-Expected-Last-Msg-Id"] == str(previous)
        previous = notification_id


async def test_restart_publishes_nothing_twice(settings: Settings, sessions: Sessions) -> None:
    """Counts what is sent on the wire too (a core subscription sees every publish, even one the
    stream would drop as a duplicate), so a relay that re-sent old events would be caught."""
    sent: list[str] = []

    async def on_wire(msg) -> None:
        sent.append((msg.headers or {})[HEADER_POSITION])

    async with jetstream(settings.nats_url) as js:
        wire = await js._nc.subscribe("ev.>", cb=on_wire)
        for round_ in range(3):
            await asyncio.to_thread(request_sessions, sessions, range(20 * round_, 20 * round_ + 20))
            stop, relay = await run_until_stopped(run_relay, settings)
            total = len(store_ids(settings.pg_dsn))
            await async_wait_for(lambda: _has(js, total), timeout=30, message=f"relay did not reach {total}")
            await stop_task(stop, relay)
            assert await stream_count(js) == total == 20 * (round_ + 1)
        await js._nc.flush()
        await async_wait_for(lambda: len(sent) >= 60, timeout=10, message="the wire subscription missed messages")
        await wire.unsubscribe()
        assert stream_positions(await stream_messages(js)) == store_ids(settings.pg_dsn)
    assert sent == [str(i) for i in store_ids(settings.pg_dsn)]


async def test_foreign_message_on_the_stream_makes_the_relay_resync_without_gap(
    settings: Settings, sessions: Sessions
) -> None:
    async with jetstream(settings.nats_url) as js:
        await ensure_streams(js)
        await js.publish("ev.session.intruder.requested", b"{}")  # no Berth-Position, no msg id
        stop, relay = await run_until_stopped(run_relay, settings)
        await asyncio.to_thread(request_sessions, sessions, range(0, 20))
        await async_wait_for(lambda: _has(js, 21), timeout=30)
        await js.publish("ev.session.intruder.requested", b"{}")  # breaks the relay's msg-id chain
        await asyncio.to_thread(request_sessions, sessions, range(20, 40))
        await async_wait_for(lambda: _has(js, 42), timeout=30, message="relay did not resync after a refused publish")
        await stop_task(stop, relay)
        messages = await stream_messages(js)
    relayed = [m for m in messages if HEADER_POSITION in m.headers]
    assert len(messages) - len(relayed) == 2
    assert stream_positions(relayed) == store_ids(settings.pg_dsn)


async def test_relay_survives_a_nats_restart(settings: Settings, sessions: Sessions, own_nats: NatsServer) -> None:
    stop, relay = await run_until_stopped(run_relay, settings)
    await asyncio.to_thread(request_sessions, sessions, range(0, 30))
    async with jetstream(settings.nats_url) as js:
        await async_wait_for(lambda: _has(js, 30), timeout=30)
    data_dir, port = own_nats.data_dir, own_nats.port
    own_nats.stop()
    await asyncio.to_thread(request_sessions, sessions, range(30, 60))
    assert data_dir is not None and port is not None
    own_nats.start(data_dir, port=port)
    async with jetstream(settings.nats_url) as js:
        await async_wait_for(lambda: _has(js, 60), timeout=30, message="relay did not catch up after NATS restart")
        await stop_task(stop, relay)
        assert stream_positions(await stream_messages(js)) == store_ids(settings.pg_dsn)


async def _has(js, count: int) -> bool:
    return await stream_count(js) >= count


async def test_server_checks_duplicates_before_the_expected_last_msg_id(own_nats: NatsServer) -> None:
    """The relay relies on it: a re-sent event is acknowledged as a duplicate, not refused,
    while a new event whose predecessor is missing is refused."""
    async with jetstream(own_nats.url) as js:
        await ensure_streams(js)
        subject = "ev.session.s1.requested"
        await js.publish(subject, b"1", headers={"Nats-Msg-Id": "1"})
        await js.publish(subject, b"2", headers={"Nats-Msg-Id": "2", "Nats-Expected-Last-Msg-Id": "1"})
        again = await js.publish(subject, b"2", headers={"Nats-Msg-Id": "2", "Nats-Expected-Last-Msg-Id": "1"})
        assert again.duplicate and again.seq == 2
        with pytest.raises(BadRequestError):
            await js.publish(subject, b"4", headers={"Nats-Msg-Id": "4", "Nats-Expected-Last-Msg-Id": "3"})
        assert await stream_count(js) == 2


async def test_the_log_is_read_again_after_the_reading_connection_was_dropped(pg_dsn: str, sessions: Sessions) -> None:
    """The relay reads the notification log on an asynchronous connection of its own: one that the
    server dropped fails that read, and the next read connects again and misses nothing."""
    await asyncio.to_thread(request_sessions, sessions, range(0, 3))
    source = await NotificationSource.open(pg_dsn)
    try:
        first = await source.read(0, 100)
        assert [n.id for n in first] == store_ids(pg_dsn)
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (source._conn.info.backend_pid,))  # type: ignore[union-attr]
        with pytest.raises(psycopg.OperationalError):
            await source.read(0, 100)
        await asyncio.to_thread(request_sessions, sessions, range(3, 5))
        again = await source.read(first[-1].id, 100)
        assert [n.id for n in first + list(again)] == store_ids(pg_dsn)
        assert [(n.topic, n.state) for n in again] == [(n[1], n[3]) for n in store_notifications(pg_dsn)[len(first):]]
    finally:
        await source.close()
