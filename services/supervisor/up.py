"""``berth up``: starts the infrastructure, prepares it, and runs every service until Ctrl-C.

Each service runs as a child process of its own (``python -m services.<name>``, settings passed as
``BERTH_*`` variables; ``services.supervisor.processes``), so that they do not share one GIL: the
gateway, relay, projector, scheduler, controller, storage and one agent process (``--agents N`` simulated
agents are N agents in that one process, ``services.agent.fleet``). Their output is merged into
this one's, each line prefixed with the service's name. ``in_process=True`` runs them as asyncio
tasks of this process instead (``services.supervisor.supervision``), as before.

Stopping is bounded (``services.supervisor.stopping``): on SIGINT/SIGTERM the services get GRACE
seconds to finish, then are killed (child processes) or cancelled (tasks); the embedded servers are
stopped next; a thread still stuck after that does not hold the process. Whatever happens, the
process ends DEADLINE seconds after the first signal, or at once on a second one, and its children
end with it (parent-death signal)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import socket
from typing import Callable, Mapping, Sequence

import msgspec

from services.agent.fleet import fleet_settings
from services.agent.main import run_agent
from services.common.bus import connect, ensure_streams
from services.common.bus_identities import ADMIN
from services.common.bus_trust import BusTrust
from services.sdk.instance import Instance, remove_instance, write_instance, write_private
from services.common.settings import Settings
from services.controller.main import run_controller
from services.application.tenancy import ADMIN_USER, ensure_defaults
from services.gateway.auth.keypairs import create_keypair, ensure_admin_keypair
from services.gateway.main import run_gateway
from services.projector.main import run_projector
from services.relay.main import run_relay
from services.scheduler.main import run_scheduler
from services.storage.keys import ensure_key, key_path
from services.storage.main import run_storage
from services.storage.server import parse_bind
from services.supervisor.infrastructure import infrastructure
from services.supervisor.left_running import describe_left, live_sessions
from services.common.process_exit import exit_if_threads_stuck
from services.supervisor.preflight import check_settings, holding_data_dir
from services.supervisor.processes import Child, Children, module_argv
from services.supervisor.runtime import StartRefused, choose_backend, describe_capacity, prepare_default_image
from services.supervisor.stopping import StopGuard, run_loop
from services.supervisor.server_keeper import KeptServer, keep_servers
from services.supervisor.supervision import Service, supervise

__all__ = ["agent_settings", "child_env", "service_processes", "up", "with_identity"]

log = logging.getLogger(__name__)

GRACE = 10.0  # seconds the services get to finish after a stop request, before they are killed (cancelled)
CANCEL_GRACE = 5.0  # seconds a cancelled service gets to finish (in-process mode)
THREAD_GRACE = 2.0  # seconds left threads get once everything else has stopped
JETSTREAM_PATIENCE = 60.0  # seconds berth up waits at its start for a JetStream not answering yet (a new cluster)
DEADLINE = 20.0  # the process ends this long after the first SIGINT/SIGTERM at the latest (+ HALT_TIMEOUT)
GATEWAY_READY = re.compile(r"^Berth GraphQL: (\S+)/graphql$")  # what `python -m services.gateway` prints


def up(settings: Settings, say: Callable[[str], None] = print, *, in_process: bool = False) -> int:
    """Runs Berth in the foreground until SIGINT or SIGTERM; returns the exit status: 0 when every
    service stopped within the grace period, else 1 (the ones that did not are logged). Ends the
    process itself (status 1) when threads are still stuck once everything else has stopped.
    Refuses to start (status 1, one line said, nothing started nor changed) when another ``berth up``
    holds the data directory, when the backend wants Docker and none answers, or when a setting would
    only make a service fail at its every start (``preflight``); the data directory stays locked until
    it returns. Each service is a child process, or, with ``in_process``, an asyncio task of this process."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(holding_data_dir(settings.data_dir))
            settings, note = choose_backend(settings)
            check_settings(settings)
        except StartRefused as exc:
            say(f"berth up: {exc}")
            return 1
        if note:
            say(note)
        return _up(settings, say, in_process)


def _up(settings: Settings, say: Callable[[str], None], in_process: bool) -> int:
    """``up`` once it may start: the infrastructure, then the services until the stop."""
    guard = StopGuard(DEADLINE)
    guard.install()
    guard.add_halt(lambda: remove_instance(settings.data_dir))
    with infrastructure(settings.data_dir, settings.nats_url, settings.pg_dsn) as infra:
        guard.add_halt(infra.halt)
        for line in infra.embedded:
            say(f"started {line}")
        settings = msgspec.structs.replace(settings, nats_url=infra.nats_url, pg_dsn=infra.pg_dsn)
        settings = with_identity(settings, infra.bus_trust, ADMIN)
        late = run_loop(functools.partial(_kept_while_running, infra.kept, settings, infra.bus_trust, say, guard,
                                          in_process), guard)
    exit_if_threads_stuck(THREAD_GRACE, 1)
    return 1 if late else 0


async def _prepare(settings: Settings) -> None:
    nc = await connect(settings.nats_url, "berth-up", settings.nats_creds or None)
    try:
        await ensure_streams(nc.jetstream(), patience=JETSTREAM_PATIENCE)
    finally:
        await nc.close()


def with_identity(settings: Settings, trust: BusTrust | None, identity: str) -> Settings:
    """Returns ``settings`` with the embedded bus's credential of ``identity`` (a service, or
    ``agents``: the template of every local agent's own); unchanged with an external bus (every
    service then connects with ``BERTH_NATS_CREDS``)."""
    if trust is None:
        return settings
    if identity == "agents":
        return msgspec.structs.replace(settings, nats_creds=trust.agent_credentials(
            [a.agent_id for a in agent_settings(settings)]))
    return msgspec.structs.replace(settings, nats_creds=str(trust.credentials(identity)))


def agent_settings(settings: Settings) -> list[Settings]:
    """Returns the settings of each local agent: one named ``agent_id``, or ``agents`` of them
    named ``<agent_id>-1`` ... (simulated backend only: real backends would share one machine's
    resources and count them several times)."""
    return fleet_settings(settings)


def child_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Returns the environment of a service's process: ``base`` (default: this process's), every
    field of ``settings`` as its ``BERTH_<FIELD>`` variable (``Settings.from_env`` reads them back
    as they are), unbuffered output."""
    env = dict(os.environ if base is None else base)
    for field in msgspec.structs.fields(Settings):
        env[f"BERTH_{field.name.upper()}"] = str(getattr(settings, field.name))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def with_storage_endpoint(settings: Settings) -> Settings:
    """Returns ``settings`` with the storage service's port fixed (a free one when
    ``BERTH_STORAGE_BIND`` says 0, kept across restarts) and ``storage_url`` naming it when unset,
    so the gateway and the instance file know the URL before the service starts."""
    host, port = parse_bind(settings.storage_bind)
    if port == 0:
        port = _free_port(host)
        settings = msgspec.structs.replace(settings, storage_bind=f"{f'[{host}]' if ':' in host else host}:{port}")
    if not settings.storage_url:
        settings = msgspec.structs.replace(settings, storage_url=f"http://{f'[{host}]' if ':' in host else host}:{port}")
    return settings


def service_processes(settings: Settings, gateway_ready: Callable[[str], None], *, grace: float = GRACE,
                      bus_trust: BusTrust | None = None) -> Children:
    """Returns the services as child processes: gateway, relay, projector, scheduler, controller, storage and
    one agent process (hosting every local agent), each with its own bus credential when
    ``bus_trust`` is given. The gateway keeps one port across restarts (a
    free one is chosen here when ``gateway_port`` is 0), and ``gateway_ready(url)`` is called each
    time it says it serves."""
    if settings.gateway_port == 0:
        settings = msgspec.structs.replace(settings, gateway_port=_free_port(settings.gateway_host))

    def env(identity: str) -> dict[str, str]:
        return child_env(with_identity(settings, bus_trust, identity))

    def gateway_line(line: str) -> None:
        match = GATEWAY_READY.match(line)
        if match:
            gateway_ready(match.group(1))

    agents = "agent" if settings.agents == 1 else "agents"
    return Children([
        Child("relay", module_argv("services.relay"), env("relay")),
        Child("projector", module_argv("services.projector"), env("projector")),
        Child("scheduler", module_argv("services.scheduler"), env("scheduler")),
        Child("controller", module_argv("services.controller"), env("controller")),
        Child("storage", module_argv("services.storage"), env("storage")),
        Child(agents, module_argv("services.agent"), env("agents")),
        Child("gateway", module_argv("services.gateway"), env("gateway"), on_line=gateway_line),
    ], grace=grace)


async def _kept_while_running(kept: Sequence[KeptServer], settings: Settings, bus_trust: BusTrust | None,
                              say: Callable[[str], None], guard: StopGuard, in_process: bool,
                              stop: asyncio.Event) -> list[str]:
    """``_run``, with the embedded servers of ``kept`` started again whenever one ends meanwhile."""
    keeping = asyncio.create_task(keep_servers(kept, stop), name="embedded servers")
    try:
        return await _run(settings, bus_trust, say, guard, in_process, stop)
    finally:
        keeping.cancel()
        await asyncio.gather(keeping, return_exceptions=True)


async def _run(settings: Settings, bus_trust: BusTrust | None, say: Callable[[str], None], guard: StopGuard,
               in_process: bool, stop: asyncio.Event) -> list[str]:
    """Prepares the infrastructure and supervises every service until ``stop`` is set; returns
    the names of the services that did not stop within the grace period."""
    settings = with_storage_endpoint(settings)
    await asyncio.to_thread(ensure_key, key_path(settings))  # the gateway mints with it from its start
    agents = agent_settings(with_identity(settings, bus_trust, "agents"))
    await _prepare(settings)
    if settings.agent_backend == "docker":
        await prepare_default_image(settings, say, stop)
    if stop.is_set():  # stopped while the image was being made
        say("Berth stopped.")
        return []
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

    answering: list[str] = []  # the gateway's URL, once it answered

    def gateway_ready(url: str) -> None:
        first = not answering
        if not first and url == answering[0]:
            return  # a restarted gateway process, on the same port: the instance file holds
        answering[:] = [url]
        write_instance(
            settings.data_dir,
            Instance(
                gateway_url=url,
                nats_url=settings.nats_url,
                nats_creds=settings.nats_creds,
                pg_dsn=settings.pg_dsn,
                pid=os.getpid(),
                access_key=access_key,
                secret_key=secret_key,
                storage_url=settings.storage_url,
            ),
        )
        if not first:
            say(f"the gateway now answers at {url}/graphql")
            return
        say(f"Berth is up. GraphQL (and GraphiQL): {url}/graphql")
        say(f"NATS: {settings.nats_url}   PostgreSQL: {settings.pg_dsn}   storage: {settings.storage_url}")
        ids = ", ".join(a.agent_id for a in agents)
        say(f"agent {ids} ({settings.agent_backend} backend) capacity {describe_capacity(settings)} each")
        try_it = "session create" if settings.agent_backend == "simulated" else "run --rm -c 'print(1)'"
        say(f"In another terminal: .venv/bin/berth {try_it}   ·   Ctrl-C stops Berth (sessions are kept; or berth down)")

    try:
        if not in_process:
            children = service_processes(settings, gateway_ready, bus_trust=bus_trust)
            guard.add_halt(children.kill)
            return await children.run(stop)
        def as_(identity: str) -> Settings:
            return with_identity(settings, bus_trust, identity)

        services = [
            Service("relay", lambda s: run_relay(as_("relay"), s)),
            Service("projector", lambda s: run_projector(as_("projector"), s)),
            Service("scheduler", lambda s: run_scheduler(as_("scheduler"), s)),
            Service("controller", lambda s: run_controller(as_("controller"), s)),
            Service("storage", lambda s: run_storage(as_("storage"), s)),
            *(Service(f"agent {a.agent_id}", functools.partial(run_agent, a)) for a in agents),
            Service("gateway", lambda s: run_gateway(as_("gateway"), s, ready=gateway_ready)),
        ]
        return await supervise(services, stop, grace=GRACE, cancel_grace=CANCEL_GRACE)
    finally:
        remove_instance(settings.data_dir)
        say("Berth stopped.")
        left = describe_left(await live_sessions(settings.pg_dsn), settings.agent_backend)
        if left is not None:
            say(left)
