"""The agent ends with ``BusClosedError`` once its NATS connection is closed for good, on a real NATS server, so
that its supervisor starts it again: its durable consumer raised it, but stopping its broker then raised
faststream's grouped ``ConnectionClosedError`` (one per subscriber it could no longer unsubscribe), which hid it,
as the controller's did (``test_follow_closed_bus.py``)."""

from __future__ import annotations

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.subjects import EVENTS_STREAM, HEARTBEAT_BUCKET
from services.agent.main import durable_name, run_agent
from services.common.settings import Settings
from tests.integration.test_follow_closed_bus import clients, ends_when_closed  # noqa: F401 - a fixture
from tests.support.agent_reports import AGENT, AgentHistory
from tests.support.agent_reports import history, settings  # noqa: F401 - the fixtures


async def test_the_agent_ends_when_its_connection_is_closed_for_good(
        js: JetStreamContext, settings: Settings, history: AgentHistory, clients: list[Client]) -> None:
    await js.key_value(HEARTBEAT_BUCKET)  # the agent waits for the bucket (made by ensure_streams: the js fixture)

    async def consuming() -> bool:  # its durable consumer, made last: it has started everything
        try:
            await js.consumer_info(EVENTS_STREAM, durable_name(AGENT))
        except NotFoundError:
            return False
        return True

    await ends_when_closed(lambda stop: run_agent(settings, stop), f"berth-agent-{AGENT}", clients, js, consuming)
