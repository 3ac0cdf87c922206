"""Composition root of the agent: backend, reporter, heartbeats and its durable event consumer.

On start the agent beats once, announces itself with ``AgentStarted`` (the controller
registers it) and consumes its own aggregate's events with the durable consumer
``agent-<id>`` (the tables of ``flow.py``), so after a restart it resumes exactly where it
stopped. Meanwhile it reconciles its containers with its assigned kernels at start and every
``BERTH_RECONCILE_INTERVAL`` seconds (``reconcile.py``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid

from nats.js import JetStreamContext

from contracts.envelope import utc_now
from contracts.reports import AgentStarted
from contracts.subjects import check_token
from services.agent.accelerators import build_plugins
from services.agent.backends.base import KernelBackend
from services.agent.backends.docker import DockerBackend, docker_problem, no_docker_message
from services.agent.backends.process import ProcessBackend
from services.agent.backends.simulated import SimulatedBackend
from services.agent.capacity import resolve_capacity
from services.agent.devices import DeviceAllocator
from services.agent.app_tunnels import AppTunnels
from services.agent.exec_server import ExecServer
from services.agent.flow import ATTEMPTS, KERNELS, RECALL
from services.agent.heartbeat import beat
from services.agent.kernels import KernelLifecycle
from services.agent.reconcile import Reconciler, reconcile_periodically
from services.common.report_ids import ReportIds
from services.agent.reporting import Reporter
from services.common.bus import credentials_identity, existing_heartbeat_bucket
from services.common.bus_closed import stop_broker
from services.common.bus_identities import ADMIN, agent_identity
from services.common.flow import consume, follow, open_broker
from services.common.settings import Settings
from services.common.volumes import parse_volumes

__all__ = ["ATTEMPTS", "build_backend", "durable_name", "own_credentials", "run_agent"]

log = logging.getLogger(__name__)

BACKENDS = ("simulated", "process", "docker", "auto")


def own_credentials(settings: Settings, agent_id: str) -> str | None:
    """Returns the agent's bus credential (``nats_creds``, ``{agent_id}`` replaced), None when none
    is set (``bus.connect`` then uses ``$BERTH_NATS_CREDS``); raises ``ValueError`` when it is not
    this agent's (nor ``admin``'s): NATS would refuse every subject of this agent."""
    creds = settings.nats_creds.replace("{agent_id}", agent_id)
    if not creds:
        return None
    try:
        identity = credentials_identity(creds)
    except (OSError, ValueError) as exc:
        raise ValueError(f"BERTH_NATS_CREDS {creds}: {exc}") from None
    if identity not in (ADMIN, agent_identity(agent_id)):
        raise ValueError(f"BERTH_NATS_CREDS {creds} is the credential of {identity}, not of agent {agent_id}: "
                         f"issue one with `berth admin agent enrol {agent_id}`")
    return creds


def durable_name(agent_id: str) -> str:
    """Returns the name of the agent's durable consumer on EVENTS."""
    return KERNELS.consumer_name(agent_id=agent_id)


def build_backend(settings: Settings) -> KernelBackend:
    """Returns the backend named by ``settings.agent_backend``: ``auto`` is docker when an engine
    answers, else a ValueError saying how to get one (never the unisolated process backend, which
    must be asked for by name)."""
    if settings.agent_backend == "simulated":
        return SimulatedBackend(delay=settings.sim_delay)
    if settings.agent_backend == "process":
        return ProcessBackend(settings.data_dir, volumes=parse_volumes(settings.storage_volumes, settings.data_dir),
                              retention=settings.kernel_retention)
    if settings.agent_backend == "auto":
        problem = docker_problem()
        if problem is not None:
            raise ValueError(no_docker_message(problem))
    if settings.agent_backend in ("docker", "auto"):
        return DockerBackend(settings.agent_id, settings.data_dir, grace=settings.docker_stop_grace,
                             pull=settings.image_pull, registries=settings.image_registries,
                             user=settings.kernel_user, scratch=settings.kernel_scratch, tmp=settings.kernel_tmp,
                             retention=settings.kernel_retention,
                             volumes=parse_volumes(settings.storage_volumes, settings.data_dir))
    raise ValueError(f"unknown agent backend {settings.agent_backend!r} (available: {', '.join(BACKENDS)})")


async def _recall_assignments(js: JetStreamContext, agent_id: str, lifecycle: KernelLifecycle, timeout: float = 30.0) -> None:
    """Replays the agent's own history so that kernels adopted after a restart are known by session."""
    caught_up = asyncio.Event()
    sub = await follow(js, RECALL, lifecycle, caught_up, agent_id=agent_id)
    try:
        async with asyncio.timeout(timeout):
            await caught_up.wait()
    finally:
        await sub.stop()


class BackgroundTaskFailed(RuntimeError):
    """One of the agent's background tasks (heartbeat, exit watch, reconciliation) failed."""


async def until_consumed(consuming: asyncio.Task[None], background: list[asyncio.Task[None]]) -> None:
    """Waits until the consumer ``consuming`` ends (at stop) and raises what it raised; raises
    ``BackgroundTaskFailed`` as soon as a ``background`` task fails before that. An agent without its
    heartbeat would be declared lost, one without its exit watch would never report an exit: it
    ends, so that its supervisor restarts it whole, rather than running on half alive. A background
    task that returns (a backend without exits to watch) is no failure."""
    pending: set[asyncio.Task[None]] = {consuming, *background}
    while consuming in pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done - {consuming}:
            if not task.cancelled() and task.exception() is not None:
                raise BackgroundTaskFailed(f"{task.get_name()} failed: {task.exception()!r}") from task.exception()
    consuming.result()


async def run_agent(settings: Settings, stop: asyncio.Event, backend: KernelBackend | None = None) -> None:
    """Runs the agent ``settings.agent_id`` until ``stop`` is set. A given ``backend`` is used
    as is and left open; otherwise one is built from the settings and closed at the end. Raises
    ``bus_closed.BusClosedError`` once its connection is closed for good, so that its supervisor starts it again."""
    agent_id = check_token(settings.agent_id, "agent id")
    allocator = await DeviceAllocator.from_plugins(build_plugins(settings.agent_accelerators))
    capacity = resolve_capacity(settings.agent_capacity, allocator.capacity(),
                                reserved_cpu=settings.agent_reserved_cpu, reserved_mem=settings.agent_reserved_mem)
    if not settings.nats_url:
        raise ValueError("the agent needs BERTH_NATS_URL")
    if settings.heartbeat_interval <= 0:
        raise ValueError(f"BERTH_HEARTBEAT_INTERVAL must be positive, got {settings.heartbeat_interval}")
    if settings.reconcile_interval <= 0:
        raise ValueError(f"BERTH_RECONCILE_INTERVAL must be positive, got {settings.reconcile_interval}")
    creds = own_credentials(settings, agent_id)
    owned = backend is None
    backend = backend if backend is not None else build_backend(settings)
    broker = open_broker(settings.nats_url, f"berth-agent-{agent_id}", creds)
    nc = await broker.connect()
    try:
        js = nc.jetstream()
        kv = await existing_heartbeat_bucket(js)
        reporter = Reporter(js, agent_id, ReportIds.of_credentials(creds))
        lifecycle = KernelLifecycle(backend, reporter, allocator=allocator)
        await broker.start()
        await _recall_assignments(js, agent_id, lifecycle)

        exec_server = ExecServer(nc, agent_id, backend)
        await exec_server.start()
        tunnels = AppTunnels(nc, agent_id, backend, settings.app_tunnel_host, settings.app_tunnel_port)
        await tunnels.start()
        heartbeats = asyncio.create_task(beat(kv, agent_id, settings.heartbeat_interval, stop,
                                              busy=exec_server.busy_kernels, app_traffic=tunnels.traffic),
                                         name="agent-heartbeat")
        watcher = asyncio.create_task(backend.watch(lifecycle.exited), name="agent-exit-watch")
        reconciler = Reconciler(backend, lifecycle, reporter)
        reconciling = asyncio.create_task(reconcile_periodically(reconciler, settings.reconcile_interval, stop),
                                          name="agent-reconcile")
        background = [heartbeats, watcher, reconciling]
        tasks = list(background)
        try:
            started = AgentStarted(
                agent_id=agent_id,
                observed_at=utc_now(),
                capacity=capacity,
                backend=backend.name,
                hostname=socket.gethostname(),
                resource_group=settings.agent_resource_group,
            )
            await reporter.send(started, f"{agent_id}:started:{uuid.uuid4().hex}")
            log.info("agent %s started (%s backend, capacity %s)", agent_id, backend.name,
                     ",".join(f"{name}={amount}" for name, amount in capacity.items()))
            consuming = asyncio.create_task(consume(broker, js, KERNELS, lifecycle, stop, agent_id=agent_id),
                                            name="agent-consume")
            tasks.append(consuming)
            await until_consumed(consuming, background)
        finally:
            await exec_server.stop()
            await tunnels.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await stop_broker(broker)  # a connection closed for good: its BusClosedError, not faststream's, is raised
        if owned:
            await backend.close()
