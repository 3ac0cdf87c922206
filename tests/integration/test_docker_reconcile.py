"""Agent reconciliation against a real Docker engine (relay → controller → agent with the Docker
backend): a labelled container of the agent that no assigned kernel explains is destroyed and
recorded, but never one of another Berth instance's agent of the same id; a kernel's container removed
behind the agent's back ends its session, releasing everything."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest
from nats.js import JetStreamContext

from contracts import session as ev
from contracts.agent import OrphanContainerDestroyed
from contracts.quota import QuotaScope
from contracts.status import Reason, SessionStatus
from services.agent.backends.docker import DockerBackend
from services.agent.backends.docker.spec import container_name
from services.agent.main import run_agent
from services.application.agents import Agents
from services.application.sessions import Sessions
from services.common.settings import Settings
from services.controller.main import run_controller
from services.relay.main import run_relay
from tests.support.docker_backend import agent_id, backend, cleaned_up, launch, make_backend, runner_dir
from tests.support.images import kernel_image
from tests.support.placed import has_status, quota_releases, start_session
from tests.support.publish import ServiceTasks, service_tasks
from tests.support.waiting import async_wait_for

__all__ = ["agent_id", "backend", "kernel_image", "runner_dir"]

pytestmark = pytest.mark.docker

OWNER = "AKIA_DOCKER_RECONCILE"


@pytest.fixture
def settings(nats_url: str, pg_dsn: str, agent_id: str) -> Settings:
    return Settings(nats_url=nats_url, pg_dsn=pg_dsn, agent_id=agent_id, agent_capacity="cpu=4,mem=8g",
                    heartbeat_interval=0.2, heartbeat_timeout=60.0, reconcile_interval=0.5)


@pytest.fixture
async def cluster(js: JetStreamContext, settings: Settings, backend: DockerBackend) -> AsyncIterator[ServiceTasks]:
    async with service_tasks() as tasks:
        tasks.start("relay", lambda stop: run_relay(settings, stop))
        tasks.start("controller", lambda stop: run_controller(settings, stop))
        tasks.start("agent", lambda stop: run_agent(settings, stop, backend=backend))
        yield tasks


async def _gone(kernel_id: str) -> bool:
    docker = aiodocker.Docker()
    try:
        await docker.containers.get(container_name(kernel_id))
        return False
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            return True
        raise
    finally:
        await docker.close()


async def test_orphans_are_destroyed_and_removed_kernels_end_their_sessions(
    cluster: ServiceTasks, apps: tuple[Sessions, Agents], backend: DockerBackend, agent_id: str, kernel_image: str
) -> None:
    sessions, agents = apps
    await async_wait_for(lambda: asyncio.to_thread(agents.get, agent_id), timeout=30,
                         message="the agent did not register")

    orphan = launch(kernel_image)  # a container of this agent, labelled, for a kernel never assigned to it
    await backend.create(orphan)
    orphan_id = orphan.kernel.kernel_id
    await async_wait_for(lambda: _gone(orphan_id), timeout=60, message="the orphan was not destroyed")

    async def recorded() -> list[OrphanContainerDestroyed]:
        return [e for e in await asyncio.to_thread(sessions.load, agent_id) if isinstance(e, OrphanContainerDestroyed)]

    await async_wait_for(recorded, timeout=15, message="the orphan's destruction was not recorded")
    assert [(e.kernel_id, e.reason) for e in await recorded()] == [(orphan_id, Reason.ORPHANED)]

    session_id = await asyncio.to_thread(start_session, sessions, OWNER, agent=agent_id, image=kernel_image)
    await async_wait_for(lambda: has_status(sessions, session_id, SessionStatus.RUNNING), timeout=60,
                         message="the session did not start")
    docker = aiodocker.Docker()
    try:  # docker rm -f behind the agent's back
        await docker.containers.container(container_name(f"{session_id}-k")).delete(force=True)
    finally:
        await docker.close()
    await async_wait_for(lambda: has_status(sessions, session_id, SessionStatus.TERMINATED), timeout=60,
                         message="the removed kernel did not end its session")
    exits = [e for e in await asyncio.to_thread(sessions.load, session_id) if isinstance(e, ev.KernelTerminated)]
    assert len(exits) == 1  # by the exit watcher (its die event) or, when it found nothing, as vanished
    assert exits[0].reason in (Reason.VANISHED, Reason.TASK_FAILED, Reason.SELF_TERMINATED)
    assert await asyncio.to_thread(quota_releases, sessions, OWNER, session_id) == [
        (QuotaScope.KEYPAIR, OWNER), (QuotaScope.PROJECT, "default"), (QuotaScope.DOMAIN, "default")]
    agent = await asyncio.to_thread(agents.get, agent_id)
    assert agent is not None and agent.allocations == {}
    cluster.check()


async def test_the_kernels_of_another_instance_whose_agent_has_the_same_id_are_no_orphans(
    cluster: ServiceTasks, apps: tuple[Sessions, Agents], backend: DockerBackend, agent_id: str, tmp_path: Path,
    runner_dir: Path, kernel_image: str,
) -> None:
    sessions, agents = apps
    await async_wait_for(lambda: asyncio.to_thread(agents.get, agent_id), timeout=30,
                         message="the agent did not register")
    # orphans are destroyed in the order of their kernel ids: theirs would go before ours
    theirs, ours = sorted((launch(kernel_image, startup_command="sleep 600") for _ in range(2)),
                          key=lambda request: request.kernel.kernel_id)
    async with cleaned_up(make_backend(agent_id, tmp_path / "other-instance", runner_dir)) as other:
        their_container = await other.create(theirs)
        await backend.create(ours)  # an orphan of this instance's agent: a pass that saw theirs destroys it
        await async_wait_for(lambda: _gone(ours.kernel.kernel_id), timeout=60, message="the orphan was not destroyed")
        assert await other.running_container(theirs.kernel.kernel_id) == their_container
    recorded = [e.kernel_id for e in await asyncio.to_thread(sessions.load, agent_id)
                if isinstance(e, OrphanContainerDestroyed)]
    assert theirs.kernel.kernel_id not in recorded
    cluster.check()
