"""``berth up``: starts the infrastructure, prepares it, and runs every service until Ctrl-C."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
from typing import Callable

import aiodocker
import msgspec

from services.agent.docker import docker_available
from services.agent.main import run_agent
from services.common.bus import connect, ensure_streams
from services.common.instance import Instance, remove_instance, write_instance, write_private
from services.common.settings import DEFAULT_IMAGE, Settings
from services.controller.main import run_controller
from services.common.tenancy import ADMIN_USER, ensure_defaults
from services.gateway.auth.keypairs import create_keypair, ensure_admin_keypair
from services.gateway.main import run_gateway
from services.projector.main import run_projector
from services.relay.main import run_relay
from services.scheduler.main import run_scheduler
from services.supervisor.infrastructure import infrastructure
from services.supervisor.supervision import Service, supervise

__all__ = ["up"]

log = logging.getLogger(__name__)


def up(settings: Settings, say: Callable[[str], None] = print) -> None:
    """Runs Berth in the foreground until SIGINT or SIGTERM."""
    with infrastructure(settings.data_dir, settings.nats_url, settings.pg_dsn) as infra:
        for line in infra.embedded:
            say(f"started {line}")
        settings = msgspec.structs.replace(settings, nats_url=infra.nats_url, pg_dsn=infra.pg_dsn)
        asyncio.run(_run(settings, say))


async def _check_kernel_image(settings: Settings, say: Callable[[str], None]) -> None:
    """Warns when the agent will use Docker but the default kernel image is missing."""
    if settings.agent_backend not in ("auto", "docker") or not await docker_available():
        return
    docker = aiodocker.Docker()
    try:
        await docker.images.inspect(DEFAULT_IMAGE)
    except aiodocker.exceptions.DockerError:
        say(f"WARNING: the default kernel image {DEFAULT_IMAGE} is missing and no registry may be reachable: "
            "build it offline with `ops/images/build-python-image` (root, debootstrap), or pass `--image`.")
    finally:
        await docker.close()


async def _prepare(settings: Settings) -> None:
    nc = await connect(settings.nats_url, "berth-up")
    try:
        await ensure_streams(nc.jetstream())
    finally:
        await nc.close()


def agent_settings(settings: Settings) -> list[Settings]:
    """Returns the settings of each local agent: one named ``agent_id``, or ``agents`` of them
    named ``<agent_id>-1`` ... (simulated backend only: real backends would share one machine's
    resources and count them several times)."""
    if settings.agents < 1:
        raise ValueError(f"BERTH_AGENTS must be at least 1, got {settings.agents}")
    if settings.agents == 1:
        return [settings]
    if settings.agent_backend != "simulated":
        raise ValueError(f"several local agents ({settings.agents}) need the simulated backend, not {settings.agent_backend!r}")
    return [msgspec.structs.replace(settings, agent_id=f"{settings.agent_id}-{i}") for i in range(1, settings.agents + 1)]


async def _run(settings: Settings, say: Callable[[str], None]) -> None:
    agents = agent_settings(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await _prepare(settings)
    await _check_kernel_image(settings, say)
    keypair_file = settings.data_dir / "admin.keypair"
    await asyncio.to_thread(ensure_defaults, settings.pg_dsn)  # domain, project, policy, resource group, admin
    created = await asyncio.to_thread(ensure_admin_keypair, settings.pg_dsn)
    if created is not None:
        access_key, secret_key = created
        say("created the admin keypair (shown once; also saved for the local CLI):")
        say(f"  access key: {access_key}")
        say(f"  secret key: {secret_key}")
        write_private(keypair_file, f"{access_key}\n{secret_key}\n".encode())
    elif not keypair_file.exists():
        # The database already has its admin (e.g. a shared BERTH_PG_DSN) but this data dir has no
        # keypair for the local CLI: give the superadmin user another one rather than re-printing a secret.
        access_key, secret_key = await asyncio.to_thread(create_keypair, settings.pg_dsn, ADMIN_USER)
        write_private(keypair_file, f"{access_key}\n{secret_key}\n".encode())
        say(f"created keypair {access_key} for the local CLI (saved in {keypair_file})")
    access_key, secret_key = keypair_file.read_text().split()

    def gateway_ready(url: str) -> None:
        write_instance(
            settings.data_dir,
            Instance(
                gateway_url=url,
                nats_url=settings.nats_url,
                pg_dsn=settings.pg_dsn,
                pid=os.getpid(),
                access_key=access_key,
                secret_key=secret_key,
            ),
        )
        say(f"Berth is up. GraphQL (and GraphiQL): {url}/graphql")
        say(f"NATS: {settings.nats_url}   PostgreSQL: {settings.pg_dsn}")
        ids = ", ".join(a.agent_id for a in agents)
        say(f"agent {ids} ({settings.agent_backend} backend) capacity {settings.agent_capacity} each")
        say("In another terminal: .venv/bin/berth session create   ·   Ctrl-C stops everything")

    services = [
        Service("relay", lambda s: run_relay(settings, s)),
        Service("projector", lambda s: run_projector(settings, s)),
        Service("scheduler", lambda s: run_scheduler(settings, s)),
        Service("controller", lambda s: run_controller(settings, s)),
        *(Service(f"agent {a.agent_id}", functools.partial(run_agent, a)) for a in agents),
        Service("gateway", lambda s: run_gateway(settings, s, ready=gateway_ready)),
    ]
    try:
        await supervise(services, stop)
    finally:
        remove_instance(settings.data_dir)
        say("Berth stopped.")
