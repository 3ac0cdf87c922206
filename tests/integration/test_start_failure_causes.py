"""The cause of a failed start and a pull's progress travel the whole way: agent report → controller
→ event → projector → read models → GraphQL (``statusDetail`` of the session and its kernels) →
``berth session info`` and ``berth run``, on real NATS, PostgreSQL and a real gateway. The agent's
backend pulls with progress, then cannot start anything, as with an image no registry has."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from contracts.agent import KernelAssigned
from services.agent.backends.base import KernelLaunch, KernelStartError, ProgressHandler
from services.agent.main import run_agent
from services.agent.backends.simulated import SimulatedBackend
from services.sdk.client import BerthClient
from services.common.settings import Settings
from services.controller.main import run_controller
from services.projector.main import run_projector
from services.relay.main import run_relay
from services.scheduler.main import run_scheduler
from tests.integration.test_gateway_tenancy_cli import berth
from tests.support.gateway import (  # noqa: F401 - fixtures
    CREATE, Keys, clean_streams, keys, read_models, served,
)
from tests.support.publish import ServiceTasks, service_tasks
from tests.support.waiting import async_wait_for

IMAGE = "does-not-exist/image:1"
CAUSE = f"image {IMAGE!r} not found and could not be pulled: registry says no"
SESSION = """query($id: String!) { session(id: $id) {
  status statusReason statusDetail kernels { status statusReason statusDetail } } }"""
EVENTS = "query($id: String) { events(aggregateId: $id) { type payload } }"


class UnpullableBackend(SimulatedBackend):
    """Reports a pull's progress, then cannot start the kernel."""

    async def prepare(self, kernel: KernelAssigned, progress: ProgressHandler | None = None) -> None:
        assert progress is not None
        for done in range(3):
            await progress(f"pulling {kernel.image}: {done}/2 layers")

    async def create(self, launch: KernelLaunch) -> str:
        raise KernelStartError(f"image {launch.kernel.image!r} not found and could not be pulled: registry says no")


@pytest.fixture
async def cluster(served: str, read_models: str, nats_url: str) -> AsyncIterator[ServiceTasks]:
    settings = Settings(nats_url=nats_url, pg_dsn=read_models, agent_id="local", agent_capacity="cpu=4,mem=8g",
                        heartbeat_interval=0.1, heartbeat_timeout=60.0)
    async with service_tasks() as tasks:
        tasks.start("relay", lambda stop: run_relay(settings, stop))
        tasks.start("projector", lambda stop: run_projector(settings, stop))
        tasks.start("scheduler", lambda stop: run_scheduler(settings, stop))
        tasks.start("controller", lambda stop: run_controller(settings, stop))
        tasks.start("agent", lambda stop: run_agent(settings, stop, backend=UnpullableBackend(delay=0)))
        yield tasks


async def ended(client: BerthClient, session_id: str) -> dict[str, Any] | None:
    session = (await client.execute(SESSION, {"id": session_id}))["session"]
    return session if session and session["status"] == "ERROR" else None


async def test_the_cause_reaches_graphql_and_the_cli(served: str, keys: Keys, cluster: ServiceTasks) -> None:
    async with BerthClient(served, *keys.alice) as alice:
        created = (await alice.execute(CREATE, {"input": {"image": IMAGE}}))["createSession"]
        session_id = created["sessionId"]
        session = await async_wait_for(lambda: ended(alice, session_id), timeout=30,
                                       message="the session did not end in ERROR")
        assert session == {"status": "ERROR", "statusReason": "failed-to-start", "statusDetail": CAUSE,
                           "kernels": [{"status": "ERROR", "statusReason": "failed-to-start", "statusDetail": CAUSE}]}
        events = (await alice.execute(EVENTS, {"id": session_id}))["events"]
        progressed = [json.loads(e["payload"])["detail"] for e in events if e["type"] == "session.kernel_progressed"]
        assert progressed == [f"pulling {IMAGE}: 0/2 layers", f"pulling {IMAGE}: 2/2 layers"]

    _, out, _ = await berth(served, keys.alice, "session", "info", session_id)
    assert CAUSE in out and "failed-to-start" in out
    info = json.loads((await berth(served, keys.alice, "-o", "json", "session", "info", session_id))[1])
    assert info["statusDetail"] == info["kernels"][0]["statusDetail"] == CAUSE

    code, out, err = await berth(served, keys.alice, "run", "-i", IMAGE, "-c", "1", ok=False)
    assert code == 1 and out == ""
    assert f"did not start: ERROR (failed-to-start): {CAUSE}" in err
    assert f"PREPARING  pulling {IMAGE}: 2/2 layers" in err
    assert "berth exec" not in err
