"""Bus helpers for tests: a clean set of Berth streams, publishing recorded events the way the
relay does, and running services as tasks that stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import nats
import psycopg
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError, ServerError

from contracts.catalog import decode_event, encode_event
from contracts.envelope import Event
from contracts.subjects import (
    DEADLETTER_STREAM,
    EVENTS_STREAM,
    HEADER_POSITION,
    HEARTBEAT_BUCKET,
    REPORTS_STREAM,
    SCHEDULER_CHECKPOINT_BUCKET,
    event_subject,
)
from services.common.bus import connect_options, ensure_streams
from tests.support.waiting import async_wait_for

__all__ = ["ServiceTasks", "fresh_bus", "publish_events", "publish_from_store", "reset_bus", "service_tasks"]


async def reset_bus(js: JetStreamContext) -> None:
    """Deletes Berth's streams (with their consumers), the heartbeat and checkpoint buckets, then creates
    them afresh, so a test starts from an empty bus on a shared server."""
    for stream in (EVENTS_STREAM, REPORTS_STREAM, DEADLETTER_STREAM):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)
    for bucket in (HEARTBEAT_BUCKET, SCHEDULER_CHECKPOINT_BUCKET):
        with contextlib.suppress(NotFoundError):
            await js.delete_key_value(bucket)

    async def recreated() -> bool:
        try:
            await ensure_streams(js)
        except ServerError:  # "error creating store for stream": the deleted one is still going
            return False
        return True

    await async_wait_for(recreated, timeout=10, interval=0.05, message="could not recreate Berth's streams")


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    """Yields a JetStream context on the shared test server with Berth's streams emptied."""
    async with fresh_bus(nats_url) as js:
        yield js


@contextlib.asynccontextmanager
async def fresh_bus(nats_url: str) -> AsyncIterator[JetStreamContext]:
    """Yields a JetStream context on ``nats_url`` after ``reset_bus``; closes the connection after."""
    nc = await nats.connect(**connect_options(nats_url, "test-bus"), connect_timeout=5)
    try:
        js = nc.jetstream()
        await reset_bus(js)
        yield js
    finally:
        await nc.close()


async def publish_from_store(js: JetStreamContext, dsn: str, after: int) -> int:
    """Publishes the stored events after position ``after`` as the relay does; returns the last position."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT notification_id, state FROM berth_events WHERE notification_id > %s"
                            " ORDER BY notification_id", (after,)).fetchall()
    for position, state in rows:
        event = decode_event(bytes(state))
        await js.publish(event_subject(event.type_name(), event.originator_id), bytes(state),
                         headers={HEADER_POSITION: str(position)})
    return rows[-1][0] if rows else after


async def publish_events(js: JetStreamContext, events: Sequence[Event], position: int, *, msg_id: str | None = None) -> None:
    """Publishes ``events`` recorded in one transaction whose last notification id is ``position``
    (the value ``record`` returned) to their ``ev.*`` subjects, as the relay would. ``msg_id``
    overrides the ``Nats-Msg-Id`` of a single event (to publish it again, as a redelivery)."""
    first = position - len(events) + 1
    for offset, event in enumerate(events):
        pos = str(first + offset)
        headers = {"Nats-Msg-Id": msg_id or pos, HEADER_POSITION: pos}
        await js.publish(event_subject(type(event).type_name(), event.originator_id), encode_event(event), headers=headers)


class ServiceTasks:
    """Runs ``run_x(stop)`` coroutines as tasks; each has its own stop event."""

    def __init__(self) -> None:
        self._running: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = {}

    def start(self, name: str, run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        """Starts the service ``name``."""
        if name in self._running:
            raise RuntimeError(f"{name} is already running")
        stop = asyncio.Event()
        self._running[name] = (asyncio.create_task(run(stop), name=name), stop)  # type: ignore[arg-type]

    async def stop(self, name: str, timeout: float = 15.0) -> None:
        """Stops the service ``name`` and raises what it raised, if anything."""
        task, stop = self._running.pop(name)
        stop.set()
        await asyncio.wait_for(task, timeout)

    def check(self) -> None:
        """Raises the error of any service that ended on its own."""
        for name, (task, _) in self._running.items():
            if task.done():
                task.result()
                raise AssertionError(f"service {name} returned before it was stopped")

    async def stop_all(self) -> None:
        """Stops every running service (the last started first)."""
        errors: list[BaseException] = []
        for name in reversed(list(self._running)):
            try:
                await self.stop(name)
            except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
                errors.append(exc)
        if errors:
            raise errors[0]


@contextlib.asynccontextmanager
async def service_tasks() -> AsyncIterator[ServiceTasks]:
    """Yields a ``ServiceTasks`` whose services are stopped on exit."""
    tasks = ServiceTasks()
    try:
        yield tasks
    finally:
        await tasks.stop_all()
