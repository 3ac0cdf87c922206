"""The bus under authentication (DESIGN.md §10): a real nats-server in operator mode refuses what
an identity may not do — an agent's credential reaches only its own subjects, only the relay
publishes events, an unauthenticated client is refused — and an agent's own flow works."""

from __future__ import annotations

import asyncio
import re
import shutil
import stat
import subprocess
from decimal import Decimal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgspec
import nats
import nats.errors
import pytest
from click.testing import CliRunner
from nats.aio.client import Client
from nats.js import JetStreamContext

from contracts import commands as c
from contracts.execution import exec_subject, io_subject, logs_subject
from contracts.reports import AgentStarted, KernelRunningReport
from contracts.subjects import (
    EVENTS_STREAM, HEARTBEAT_BUCKET, SCHEDULER_CHECKPOINT_BUCKET, agent_events_filter, heartbeat_key_subject,
    report_subject,
)
from services.agent.main import run_agent
from services.agent.fleet import fleet_settings
from services.common.bus import connect, connect_options, credentials_identity, ensure_streams
from services.common.bus_identities import ADMIN, SERVICES, agent_identity, inbox_prefix
from services.common.bus_trust import BusTrust
from services.common.settings import Settings
from services.scheduler.checkpoint import KEY, checkpoint_bucket
from services.scheduler.checkpoint_chunks import read_chunked, write_chunked
from services.supervisor.embedded import NatsServer, nats_server_binary
from services.supervisor.up import with_identity
from tests.integration.test_agent import AgentHistory, Reports
from tests.support.waiting import async_wait_for

AGENT = "local"
"""The agent of ``AgentHistory`` (test_agent.py); the one whose credential is tested."""
OTHER = "other"


class Probe:
    """A connection under one identity that records the permission violations the server reports."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: Client | None = None

    async def on_error(self, error: Exception) -> None:
        self.errors.append(str(error))

    async def refused(self, action: Callable[[Client], Awaitable[object]], subject: str) -> None:
        """Runs ``action`` and waits for the server's permissions violation naming ``subject``."""
        assert self.nc is not None
        await action(self.nc)
        await self.nc.flush()
        await async_wait_for(lambda: any("permissions violation" in e.lower() and f'"{subject.lower()}"' in e.lower() for e in self.errors),
                             timeout=10, message=f"no permissions violation for {subject!r}: {self.errors}")


@pytest.fixture
async def connect_as(nats_server: NatsServer) -> AsyncIterator[Callable[[str], Awaitable[Probe]]]:
    probes: list[Probe] = []

    async def connect(identity: str) -> Probe:
        probe = Probe()
        options = connect_options(nats_server.url, f"probe-{identity}", nats_server.credentials(identity))
        probe.nc = await nats.connect(**options, error_cb=probe.on_error, connect_timeout=5)
        probes.append(probe)
        return probe

    yield connect
    for probe in probes:
        assert probe.nc is not None
        await probe.nc.close()


def _publish(subject: str, data: bytes = b"{}") -> Callable[[Client], Awaitable[None]]:
    async def action(nc: Client) -> None:
        await nc.publish(subject, data)
    return action


async def test_an_unauthenticated_client_is_refused(nats_url: str) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(nats_url, connect_timeout=5, allow_reconnect=False, max_reconnect_attempts=0)


async def test_an_agent_cannot_act_as_another_agent(js: JetStreamContext, connect_as) -> None:
    probe = await connect_as(agent_identity(AGENT))
    report = report_subject(OTHER, "agent_started")
    await probe.refused(_publish(report), report)
    await probe.refused(_publish(exec_subject(OTHER)), exec_subject(OTHER))
    kv_key = heartbeat_key_subject(OTHER)
    await probe.refused(_publish(kv_key), kv_key)
    for subject in (io_subject(OTHER, "k1", "r1"), exec_subject(OTHER), logs_subject(OTHER),
                    f"{inbox_prefix(agent_identity(OTHER))}.x", f"{inbox_prefix('gateway')}.x", "io.agent.*.>"):
        await probe.refused(lambda nc, s=subject: nc.subscribe(s), subject)
    assert (await js.stream_info("REPORTS")).state.messages == 0


async def test_an_agent_publishes_reports_only_on_the_subjects_of_report_types(js: JetStreamContext,
                                                                               connect_as) -> None:
    """Each subject of REPORTS has its own share of the per-subject limit: an agent allowed
    ``rp.agent.<id>.>`` could make up subjects without end and fill the stream past its share."""
    probe = await connect_as(agent_identity(AGENT))
    for made_up in (report_subject(AGENT, "made-up-0"), f"{report_subject(AGENT, 'agent_started')}.x"):
        await probe.refused(_publish(made_up), made_up)
    assert (await js.stream_info("REPORTS")).state.messages == 0
    ack = await probe.nc.jetstream().publish(report_subject(AGENT, "agent_started"), b"{}")
    assert ack.stream == "REPORTS"


async def test_only_the_relay_publishes_events(connect_as) -> None:
    subject = "ev.agent.local.KernelAssigned"
    for identity in (*(s for s in SERVICES if s != "relay"), agent_identity(AGENT)):
        probe = await connect_as(identity)
        await probe.refused(_publish(subject), subject)
    relay = await connect_as("relay")
    await relay.nc.publish("ev.invalid.0.event", b"{}")
    await relay.nc.flush()
    assert relay.errors == []


async def test_an_agent_creates_no_consumer_but_its_own(js: JetStreamContext, connect_as) -> None:
    probe = await connect_as(agent_identity(AGENT))
    others = agent_events_filter(OTHER)
    forbidden = (
        f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.{agent_identity(OTHER)}.{others}",  # another agent's
        f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.{agent_identity(AGENT)}.ev.>",  # its own name, every event
        f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}",  # an ephemeral one with any filter
        f"$JS.API.CONSUMER.DURABLE.CREATE.{EVENTS_STREAM}.{agent_identity(AGENT)}",  # filter not in the subject
        f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.projector",
        f"$JS.API.STREAM.DELETE.{EVENTS_STREAM}",
    )
    for subject in forbidden:
        await probe.refused(_publish(subject), subject)
    names = [name async for name in _consumer_names(js)]
    assert not [n for n in names if OTHER in n or n == agent_identity(AGENT)], names


async def _consumer_names(js: JetStreamContext) -> AsyncIterator[str]:
    for info in await js.consumers_info(EVENTS_STREAM):
        yield info.name


async def test_an_agent_runs_its_own_flow_under_its_own_credential(js: JetStreamContext, nats_server: NatsServer) -> None:
    history = AgentHistory(js)
    await history.do(c.RegisterAgent(capacity={"cpu": Decimal(4), "mem": Decimal(8 * 1024**3)}, backend="simulated",
                                     hostname="h"))
    creds = nats_server.credentials(agent_identity(AGENT))
    settings = Settings(nats_url=nats_server.url, nats_creds=str(creds), agent_id=AGENT, sim_delay=0.01,
                        heartbeat_interval=0.1)
    log_start = _log_size(nats_server)
    reports = Reports(js)
    kv = await js.key_value(HEARTBEAT_BUCKET)
    for kernel in ("k1", "k2"):  # the second time, a restarted agent recalls its history (named consumer again)
        stop = asyncio.Event()
        task = asyncio.create_task(run_agent(settings, stop))
        try:
            await history.assign(kernel)
            seen: list[object] = []

            async def running(kernel: str = kernel) -> bool:
                seen.extend(await reports.take(1, timeout=10))
                return _has_running(seen, kernel)

            await async_wait_for(running, timeout=30, message=f"{kernel} never reported RUNNING")
            assert any(isinstance(r, AgentStarted) for r in seen)
            assert (await kv.get(AGENT)).value
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    violations = [line for line in _log_lines(nats_server, log_start) if re.search(r"(Publish|Subscription) Violation", line)]
    assert violations == []


def _has_running(reports: list, kernel_id: str) -> bool:
    return any(isinstance(r, KernelRunningReport) and r.kernel_id == kernel_id for r in reports)


def _log_size(server: NatsServer) -> int:
    assert server.data_dir is not None
    return (server.data_dir / "nats-server.log").stat().st_size


def _log_lines(server: NatsServer, start: int) -> list[str]:
    assert server.data_dir is not None
    with open(server.data_dir / "nats-server.log", "rb") as log:
        log.seek(start)
        return log.read().decode(errors="replace").splitlines()



async def test_an_enrolled_agent_connects_without_a_server_reload_and_a_revoked_one_is_cut_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.cli.main import cli, _register

    server = NatsServer()
    server.start(tmp_path / "data" / "nats")  # the instance layout of ``berth up`` in tmp_path/data
    try:
        _register()
        monkeypatch.chdir(tmp_path)
        result = CliRunner().invoke(cli, ["admin", "agent", "enrol", "gpu-7", "--data-dir", str(tmp_path / "data")])
        assert result.exit_code == 0, result.output
        creds = tmp_path / "gpu-7.creds"
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600
        again = CliRunner().invoke(cli, ["admin", "agent", "enrol", "gpu-7", "--data-dir", str(tmp_path / "data")])
        assert again.exit_code != 0 and "exists" in again.output
        assert "choose another --file" in again.output, again.output  # the option it has (it said --output)
        bad = CliRunner().invoke(cli, ["admin", "agent", "enrol", "../x", "--data-dir", str(tmp_path / "data")])
        assert bad.exit_code != 0 and "invalid agent id" in bad.output

        admin = await connect(server.url, "test-admin", server.credentials(ADMIN))
        await ensure_streams(admin.jetstream())
        await admin.close()
        probe = Probe()
        probe.nc = await nats.connect(**connect_options(server.url, "gpu-7", creds), error_cb=probe.on_error)
        try:
            js = probe.nc.jetstream()
            ack = await js.publish(report_subject("gpu-7", "agent_started"), b"{}")
            assert ack.stream == "REPORTS"
            await probe.refused(_publish(report_subject("gpu-8", "agent_started")), report_subject("gpu-8", "agent_started"))

            revoked = CliRunner().invoke(cli, ["admin", "agent", "revoke", "gpu-7", "--data-dir", str(tmp_path / "data")])
            assert revoked.exit_code == 0 and "NATS reloaded" in revoked.output, revoked.output
            await async_wait_for(lambda: not probe.nc.is_connected, timeout=10, message="a revoked agent stays connected")
            with pytest.raises(nats.errors.Error, match="Authorization Violation"):
                await nats.connect(server.url, user_credentials=str(creds), allow_reconnect=False, connect_timeout=5)
        finally:
            await probe.nc.close()
    finally:
        server.stop()


@pytest.mark.parametrize("config, trust_at", [("nats.conf", ".berth/nats/auth"), ("ops/nats/cluster.conf", "auth")])
def test_the_sample_configs_include_the_trust_that_bus_init_writes(tmp_path: Path, config: str, trust_at: str) -> None:
    from services.cli.main import cli, _register

    _register()
    result = CliRunner().invoke(cli, ["admin", "bus", "init", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    (tmp_path / trust_at).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / trust_at).symlink_to(tmp_path / "data" / "nats" / "auth")
    copy = tmp_path / "server.conf"
    shutil.copy(Path(__file__).parents[2] / config, copy)
    checked = subprocess.run([nats_server_binary(), "-c", str(copy), "-t"], capture_output=True, text=True,
                             timeout=30, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (tmp_path / trust_at).unlink()  # without the trust the config does not load: it never runs open
    refused = subprocess.run([nats_server_binary(), "-c", str(copy), "-t"], capture_output=True, text=True,
                             timeout=30, cwd=tmp_path)
    assert refused.returncode != 0 and "server.conf" in refused.stdout + refused.stderr


def test_berth_up_gives_each_service_and_each_local_agent_its_own_credential(tmp_path: Path) -> None:
    trust = BusTrust.load_or_create(tmp_path / "auth")
    settings = Settings(agents=3, agent_backend="simulated", agent_id="local", data_dir=tmp_path)
    for service in SERVICES:
        assert credentials_identity(with_identity(settings, trust, service).nats_creds) == service
    fleet = with_identity(settings, trust, "agents")
    for agent in fleet_settings(fleet):
        creds = Path(agent.nats_creds.replace("{agent_id}", agent.agent_id))
        assert credentials_identity(creds) == agent_identity(agent.agent_id)
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "auth").stat().st_mode) == 0o700
    assert with_identity(settings, None, "relay") == settings  # an external bus: BERTH_NATS_CREDS as given


async def test_an_agent_refuses_to_start_with_another_agents_credential(nats_server: NatsServer, tmp_path: Path) -> None:
    theirs = Settings(nats_url=nats_server.url, nats_creds=str(nats_server.credentials(agent_identity(OTHER))),
                      agent_id=AGENT)
    with pytest.raises(ValueError, match=f"credential of agent-{OTHER}, not of agent {AGENT}: .*enrol {AGENT}"):
        await run_agent(theirs, asyncio.Event())
    missing = msgspec.structs.replace(theirs, nats_creds=str(tmp_path / "none.creds"))
    with pytest.raises(ValueError, match="BERTH_NATS_CREDS .*none.creds"):
        await run_agent(missing, asyncio.Event())


async def test_only_the_scheduler_writes_and_reads_its_checkpoint(js: JetStreamContext, connect_as) -> None:
    key = f"$KV.{SCHEDULER_CHECKPOINT_BUCKET}.{KEY}"
    for identity in (*(s for s in SERVICES if s != "scheduler"), agent_identity(AGENT)):
        probe = await connect_as(identity)
        await probe.refused(_publish(key), key)
        info = f"$JS.API.STREAM.INFO.KV_{SCHEDULER_CHECKPOINT_BUCKET}"
        await probe.refused(_publish(info), info)
    scheduler = await connect_as("scheduler")
    kv = await checkpoint_bucket(scheduler.nc.jetstream())  # creates it, as the scheduler does at start
    data = b"checkpoint" * 100
    await write_chunked(kv, data, 256)  # its chunks, then its head: each a key of the bucket
    assert await read_chunked(kv) == data
    assert scheduler.errors == []
