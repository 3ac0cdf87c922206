"""An agent's own bus credential in a hostile agent's hands, for the tests of what it can fill: ``hostile_nc`` (a
connection as agent ``HOSTILE``, on the ``nats_server`` and ``js`` fixtures) and ``fill`` (messages ``PAYLOAD`` +
their index, so the oldest kept can be told)."""

from __future__ import annotations

from typing import AsyncIterator

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from services.common.bus import connect
from services.common.bus_identities import agent_identity
from services.supervisor.embedded import NatsServer

__all__ = ["HOSTILE", "PAYLOAD", "fill", "hostile_nc"]

HOSTILE = "evil"
PAYLOAD = b"x" * 64


@pytest.fixture
async def hostile_nc(nats_server: NatsServer, js: JetStreamContext) -> AsyncIterator[Client]:
    """A connection with the agent ``HOSTILE``'s own credential (the streams reset by ``js``)."""
    nc = await connect(nats_server.url, "hostile-agent", nats_server.credentials(agent_identity(HOSTILE)))
    try:
        yield nc
    finally:
        await nc.close()


async def fill(js: JetStreamContext, subject: str, count: int) -> None:
    """Publishes ``count`` messages on ``subject``: ``PAYLOAD`` and the index of each."""
    for index in range(count):
        await js.publish(subject, PAYLOAD + str(index).encode())
