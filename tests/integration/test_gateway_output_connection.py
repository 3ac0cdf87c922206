"""Runs' output has a NATS connection of its own in the gateway (``Resources.output_nats``), on a real NATS server.

nats-server queues every message for the connection that subscribed to it: with one connection for everything, the
answers to the gateway's requests to agents (runs started, interrupts, logs, app tunnels) waited behind seconds of
queued output while agents flooded, and a gateway that read too slowly was cut as a slow consumer (past the server's
max pending, 64 MiB), failing every tenant's requests and streams at once. Now such a cut is a gap in the streams of
the runs then streaming (their clients are told ``truncated``), the connection comes back by itself, and requests
never notice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from contracts.execution import ExecAccepted, exec_subject, io_subject
from services.application.sessions import Sessions
from services.common.bus import connect
from services.common.settings import Settings
from services.gateway.errors import UNAVAILABLE, GatewayError
from services.gateway.execution.agent_calls import interruption, request_agent
from services.gateway.execution.run_output import subscribe_run
from services.gateway.resources import CONTROL_CONNECTION, OUTPUT_CONNECTION, Resources
from services.sdk.client import BerthClient
from tests.integration.test_exec import backend, cluster, execute, out, running_session, sessions  # noqa: F401
from tests.integration.test_follow_closed_bus import clients  # noqa: F401 - a fixture
from tests.support.gateway import Keys, clean_streams, keys, read_models, served  # noqa: F401 - fixtures
from tests.support.publish import ServiceTasks
from tests.support.waiting import async_wait_for

FLOOD = 128 << 20
"""Bytes of output sent to a gateway that reads none: twice the server's max pending (64 MiB), kernel buffers aside."""
CHUNK = b"x" * (256 << 10)


@pytest.fixture
async def resources(nats_url: str) -> AsyncIterator[Resources]:
    """The gateway's resources; only NATS is used (PostgreSQL is never opened)."""
    resources = Resources(Settings(pg_dsn="postgresql://unused@127.0.0.1:1/unused", nats_url=nats_url))
    yield resources
    await resources.close()


@pytest.fixture
async def agent(nats_url: str) -> AsyncIterator[Client]:
    """An agent ``a`` that accepts every request on its exec subject."""
    nc = await connect(nats_url, "test-agent")

    async def accept(msg: Msg) -> None:
        await msg.respond(msgspec.json.encode(ExecAccepted(ok=True)))

    await nc.subscribe(exec_subject("a"), cb=accept)
    yield nc
    await nc.close()


def reading(nc: Client, on: bool) -> None:
    """Stops (a gateway too busy to read) or resumes reading ``nc``'s socket."""
    transport = nc._transport._io_writer.transport  # type: ignore[union-attr]  # nats-py's TcpTransport
    transport.resume_reading() if on else transport.pause_reading()


async def test_a_slow_consumer_cut_of_the_output_connection_leaves_requests_working(
        resources: Resources, agent: Client) -> None:
    control, output = await resources.nats(), await resources.output_nats()
    assert (control.options["name"], output.options["name"]) == (CONTROL_CONNECTION, OUTPUT_CONNECTION)
    await subscribe_run(output, io_subject("a", "k", "flooding"))  # a run its client reads no more
    other = await subscribe_run(output, io_subject("a", "k", "other"))

    reading(output, False)
    sent = 0
    while sent < FLOOD:
        await agent.publish(io_subject("a", "k", "flooding"), CHUNK)
        sent += len(CHUNK)
    await agent.flush(timeout=30)  # the server has queued it all for the output connection: past max pending, cut

    assert (await request_agent(control, "a", interruption("k", "flooding"))).ok
    reading(output, True)
    await async_wait_for(lambda: output.stats["reconnects"] >= 1 and output.is_connected, timeout=30,
                         message="the output connection was not cut and back")
    assert not resources.bus_closed()  # an outage of it is waited out, as one of the control connection
    await agent.publish(io_subject("a", "k", "other"), b"after the cut")
    await agent.flush()
    assert (await other.next_msg(timeout=10)).data == b"after the cut"  # the run's subscription came back with it
    assert control.is_connected and control.stats["reconnects"] == 0
    assert (await request_agent(control, "a", interruption("k", "other"))).ok


async def test_the_output_connection_closed_for_good_is_the_bus_closed(resources: Resources, agent: Client) -> None:
    control, output = await resources.nats(), await resources.output_nats()
    assert not resources.bus_closed()

    await output.close()

    assert resources.bus_closed()  # the gateway ends (``main.run_gateway``) and is started again
    assert (await request_agent(control, "a", interruption("k", "r"))).ok
    with pytest.raises(GatewayError) as refused:  # meanwhile no run is asked for whose output nobody would see
        await subscribe_run(output, io_subject("a", "k", "r"))
    assert refused.value.code == UNAVAILABLE


async def test_both_connections_close_with_the_gateway(resources: Resources) -> None:
    control, output = await resources.nats(), await resources.output_nats()
    assert control is not output

    await resources.close()

    assert control.is_closed and output.is_closed


async def test_a_runs_output_reaches_its_client_over_the_output_connection(
        clients: list[Client], served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions) -> None:
    async with BerthClient(served, *keys.alice) as alice:
        session_id = await running_session(alice, sessions)
        items = await execute(alice, session_id, "import sys; sys.stdout.write('x' * (1 << 20))")
        assert out(items) == "x" * (1 << 20) and items[-1]["exitCode"] == 0
    [control] = [c for c in clients if c.options["name"] == CONTROL_CONNECTION]
    [output] = [c for c in clients if c.options["name"] == OUTPUT_CONNECTION]
    assert output.stats["in_bytes"] >= 1 << 20 > control.stats["in_bytes"]  # the control one: the agent's answers
    cluster.check()
