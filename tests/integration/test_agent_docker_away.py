"""The agent while the Docker engine cannot be reached (a socket nobody listens on, through the real
aiodocker client), on real NATS: even on the last delivery of an assignment, the start is not
reported as failed — the error is raised for the consumer, which waits Docker out
(services.common.transient) — so the session is not ended for an outage."""

from __future__ import annotations

from pathlib import Path

import aiodocker
import pytest
from nats.js import JetStreamContext

from contracts.reports import decode_report
from contracts.subjects import REPORTS_STREAM
from services.agent.backends.base import KernelLaunch
from services.agent.backends.simulated import SimulatedBackend
from services.agent.kernels import KernelLifecycle
from services.agent.reporting import Reporter
from services.common.transient import unavailable_dependency
from tests.integration.test_flow import assigned


class DockerAwayBackend(SimulatedBackend):
    """Pulls (pretends to), then creates through a Docker engine that does not answer."""

    def __init__(self, socket: Path) -> None:
        super().__init__(delay=0)
        self._url = f"unix://{socket}"

    async def create(self, launch: KernelLaunch) -> str:
        docker = aiodocker.Docker(url=self._url)
        try:
            await docker.containers.list()
        finally:
            await docker.close()
        raise AssertionError("no engine should answer")


async def report_types(js: JetStreamContext) -> list[str]:
    sub = await js.pull_subscribe("rp.>", stream=REPORTS_STREAM)
    try:
        messages = await sub.fetch(100, timeout=1)
    except Exception:  # noqa: BLE001 - none
        return []
    finally:
        await sub.unsubscribe()
    return [decode_report(m.data).type_name() for m in messages]


async def test_docker_away_is_not_a_failed_start_even_on_the_last_delivery(js: JetStreamContext,
                                                                           tmp_path: Path) -> None:
    lifecycle = KernelLifecycle(DockerAwayBackend(tmp_path / "no-docker.sock"), Reporter(js, "a1"))
    with pytest.raises(aiodocker.exceptions.DockerError) as raised:
        await lifecycle.start(assigned("a1", 1, "k1"), last_attempt=True)
    assert unavailable_dependency(raised.value) == "docker"
    assert "kernel_exited" not in " ".join(await report_types(js)), "no failed-to-start for an outage"
