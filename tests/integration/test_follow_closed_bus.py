"""A service that follows a stream with push subscriptions (an ordered follow, the projector's feed) ends once its
NATS connection is closed for good, on a real NATS server and PostgreSQL, so that its supervisor starts it again:
nats-py ends such a subscription's deliveries without a word, and the scheduler and the projector waited for ever
(the projector polling an empty feed twice a second), looking healthy, never started again. The pull consumers'
counterpart: test_consumer_closed_bus.py (the controller, which has both, ends with ``BusClosedError`` too: not
with the ``ConnectionClosedError`` of draining the closed connection at the end)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from contracts import agent as ev
from contracts.subjects import EVENTS_STREAM, HEARTBEAT_BUCKET
from services.common.bus import connect
from services.common.bus_closed import BusClosedError, follow_until
from services.common.flow import Subscription, follow
from services.common.settings import Settings
from services.controller.main import run_controller
from services.projector.main import run_projector
from services.scheduler.main import run_scheduler
from tests.integration.test_flow import assigned, publish
from tests.support.waiting import async_wait_for

ENDS_WITHIN = 20.0
"""Seconds a service has to end once its connection is closed (it looks every second)."""


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> list[Client]:
    """Every NATS connection made in this process during the test (to close a service's under it)."""
    made: list[Client] = []
    connect_client = Client.connect

    async def connect_and_keep(self: Client, *args: Any, **kwargs: Any) -> None:
        await connect_client(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(Client, "connect", connect_and_keep)
    return made


def is_bus_closed(error: BaseException | None) -> bool:
    """Whether ``error`` is ``BusClosedError``, or a group of them (its consumers all ended so), and nothing else."""
    if isinstance(error, BaseExceptionGroup):
        return all(is_bus_closed(inner) for inner in error.exceptions)
    return isinstance(error, BusClosedError)


def consuming(js: JetStreamContext, **counts: int) -> Callable[[], Awaitable[bool]]:
    """Returns whether each stream named has at least its count of consumers (a service has started them all)."""
    async def started() -> bool:
        found = {stream: (await js.stream_info(stream)).state.consumer_count for stream in counts}
        return all(found[stream] >= count for stream, count in counts.items())
    return started


async def ends_when_closed(run: Callable[[asyncio.Event], Awaitable[None]], name: str, clients: list[Client],
                           js: JetStreamContext, started: Callable[[], Awaitable[bool]]) -> None:
    """Runs a service until it has ``started`` its consumers, closes its connection ``name``, and checks that it
    ends with ``BusClosedError``."""
    stop = asyncio.Event()
    task = asyncio.create_task(run(stop))
    try:
        await async_wait_for(lambda: task.done() or started(), timeout=30, message=f"{name} did not start")
        assert not task.done(), task
        [nc] = [c for c in clients if c.options["name"] == name]
        await nc.close()
        done, _ = await asyncio.wait([task], timeout=ENDS_WITHIN)
        if not done:  # where it waits: what a CI log needs to find the cause (a swallowed cancellation, once)
            for waiting in asyncio.all_tasks():
                waiting.print_stack(file=sys.stderr)
        assert done, f"{name} did not end within {ENDS_WITHIN} s of its connection's closure"
        assert is_bus_closed(task.exception()), task.exception()
    finally:
        stop.set()
        await asyncio.wait([task], timeout=30)


async def test_a_follow_ends_its_owner_when_its_connection_is_closed_for_good(nats_url: str,
                                                                               js: JetStreamContext) -> None:
    await publish(js, [assigned("a1", 1, "k-1")])
    nc = await connect(nats_url, "follow-closed-test")
    seen: list[str] = []
    view = Subscription(name="closedfollow-view", stream=EVENTS_STREAM,
                        routes={ev.KernelAssigned: lambda target, event: target.append(event.kernel_id)})
    caught_up = asyncio.Event()
    following = await follow(nc.jetstream(), view, seen, caught_up)
    await asyncio.wait_for(caught_up.wait(), 30)
    stop = asyncio.Event()
    owner = asyncio.create_task(follow_until(stop, nc.jetstream(), view.name, every=0.05))

    await nc.close()

    with pytest.raises(BusClosedError, match="closed for good"):
        await asyncio.wait_for(owner, ENDS_WITHIN)
    await following.stop()  # nothing to unsubscribe on a closed connection: no error hides BusClosedError
    assert seen == ["k-1"]


async def test_the_scheduler_ends_when_its_connection_is_closed_for_good(
        nats_url: str, pg_dsn: str, apps: Any, js: JetStreamContext, clients: list[Client]) -> None:
    settings = Settings(nats_url=nats_url, pg_dsn=pg_dsn)
    await ends_when_closed(lambda stop: run_scheduler(settings, stop), "berth-scheduler", clients, js,
                           consuming(js, EVENTS=1))


async def test_the_projector_ends_when_its_connection_is_closed_for_good(
        nats_url: str, pg_dsn: str, js: JetStreamContext, clients: list[Client]) -> None:
    settings = Settings(nats_url=nats_url, pg_dsn=pg_dsn)
    await ends_when_closed(lambda stop: run_projector(settings, stop), "berth-projector", clients, js,
                           consuming(js, EVENTS=1))


async def test_the_controller_ends_when_its_connection_is_closed_for_good(
        nats_url: str, pg_dsn: str, apps: Any, js: JetStreamContext, clients: list[Client]) -> None:
    settings = Settings(nats_url=nats_url, pg_dsn=pg_dsn)
    started = consuming(js, EVENTS=2, REPORTS=2, **{f"KV_{HEARTBEAT_BUCKET}": 1})  # follows, reports, heartbeats
    await ends_when_closed(lambda stop: run_controller(settings, stop), "berth-controller", clients, js, started)
