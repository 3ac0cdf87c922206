"""services.common.flow across a NATS restart (a server of the test's own, stopped and started on
the same port and data): the durable consumer and the ordered follow carry on by themselves,
each message handled once, nothing dead-lettered."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from contracts import agent as ev
from contracts.catalog import encode_event
from contracts.envelope import Event
from contracts.subjects import EVENTS_STREAM, event_subject
from services.common.flow import Subscription
from services.supervisor.embedded import NatsServer
from tests.integration.test_flow import (
    Recorder, assigned, dead_letters, following, publish, running, table,
)
from tests.support.publish import fresh_bus
from tests.support.relay import own_nats  # noqa: F401 - fixture
from tests.support.waiting import async_wait_for


async def published_once(js: JetStreamContext, event: Event) -> bool:
    """Publishes ``event`` with its id as ``Nats-Msg-Id`` (a retry is a duplicate, not a second
    message); False while JetStream does not answer yet."""
    try:
        await js.publish(event_subject(event.type_name(), event.originator_id), encode_event(event),
                         stream=EVENTS_STREAM, headers={"Nats-Msg-Id": str(event.event_id)}, timeout=2)
    except (nats.errors.Error, nats.js.errors.Error):
        return False
    return True


async def test_consumers_carry_on_after_a_nats_restart(own_nats: NatsServer, tmp_path: Path) -> None:
    url, data_dir, port = own_nats.url, own_nats.data_dir, own_nats.port
    seen: list[str] = []

    def apply(target: list[str], event: Event) -> None:
        target.append(event.kernel_id)  # type: ignore[attr-defined]

    view = Subscription(name="restarttest-view", stream=EVENTS_STREAM, routes={ev.KernelAssigned: apply})
    target = Recorder()
    async with fresh_bus(url) as js:
        await publish(js, [assigned("a1", 1, "ok-1")])
        async with running(url, js, table(), target), following(js, view, seen) as (_, caught_up):
            await async_wait_for(lambda: target.handled == ["ok-1"] and seen == ["ok-1"], timeout=30,
                                 message="before the restart")
            own_nats.stop()
            assert data_dir is not None
            own_nats.start(data_dir, port=port)
            await async_wait_for(lambda: published_once(js, assigned("a1", 2, "ok-2")), timeout=60,
                                 message="JetStream takes messages again")
            await async_wait_for(lambda: target.handled == ["ok-1", "ok-2"], timeout=60,
                                 message=f"the consumer after the restart: {target.handled}")
            await async_wait_for(lambda: seen == ["ok-1", "ok-2"], timeout=60,
                                 message=f"the follow after the restart: {seen}")
        assert await dead_letters(js, "flowtest-a1") == []
