"""One fault scenario on a fresh instance: a PostgreSQL of its own (``EmbeddedPostgres``), `berth up`
on simulated agents against it, the soak load (``ops/bench/soak_driver.py``: signed createSession /
terminateSession from several clients) with the fault injected while it runs, then the verdict
(``ops/faults/verdict.py``). Shared by ``python -m ops.faults`` and tests/e2e/test_faults.py."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

from contracts.subjects import EVENTS_STREAM
from ops.bench.soak import CAPACITY, BerthUp
from ops.bench.soak_driver import Endpoint, run_soak
from ops.bench.soak_report import SoakResult
from ops.faults.kills import KillPlan, kill_services
from ops.faults.lost_agent import LoneAgent
from ops.faults.nats_cluster import NatsCluster
from ops.faults.outages import postgres_outage, restart_nats
from ops.faults.verdict import Verdict, judge
from services.sdk.instance import read_instance
from services.supervisor.embedded import NatsServer
from services.supervisor.embedded_postgres import EmbeddedPostgres
from services.supervisor.infrastructure import ensure_database, nats_data_dir

__all__ = ["SCENARIOS", "Load", "Outcome", "run_scenario"]

SERVICES = ["relay", "projector", "scheduler", "controller", "gateway", "agent"]


@dataclass
class Load:
    rounds: int = 2
    sessions: int = 40  # per round
    clients: int = 8
    agents: int = 3
    timeout: float = 120.0  # seconds per phase of the load, and for doctor to be clean afterwards
    kills: int = 1  # SIGKILLs of each service
    down: float = 3.0  # seconds PostgreSQL or NATS stays down
    seed: int = 13


@dataclass
class Outcome:
    fault: str
    soak: SoakResult
    verdict: Verdict
    injected: list[str] = field(default_factory=list)  # what was done, for people
    problems: list[str] = field(default_factory=list)  # the injection's own failures
    fault_ended: float = 0.0  # time.monotonic() at the end of the last fault

    @property
    def requested(self) -> int:
        return sum(r.requested for r in self.soak.rounds)

    @property
    def converged(self) -> int:
        return sum(len(r.ids) for r in self.soak.rounds if r.converged)

    @property
    def recovery(self) -> float:
        """Seconds from the end of the last fault to a clean doctor (0 when it was clean at once)."""
        return max(0.0, self.verdict.clean_at - self.fault_ended)

    @property
    def ok(self) -> bool:
        return (self.converged == self.requested and self.soak.converged and not self.problems
                and self.verdict.clean)


class _Context:
    def __init__(self, berth: BerthUp, postgres: EmbeddedPostgres, pg_root: Path, load: Load) -> None:
        self.berth, self.postgres, self.pg_root, self.load = berth, postgres, pg_root, load
        self.injected: list[str] = []
        self.problems: list[str] = []
        self.owned_nats: list[NatsServer] = []
        self.lone_agent: LoneAgent | None = None
        self.endpoint: Endpoint | None = None
        self.cluster: NatsCluster | None = None


Inject = Callable[[_Context], Awaitable[None]]


def _kills(services: list[str]) -> Inject:
    async def inject(ctx: _Context) -> None:
        assert ctx.berth.proc is not None
        plan = KillPlan(services=services, times=ctx.load.kills, delay=0.5, gap=1.0, seed=ctx.load.seed)
        await kill_services(ctx.berth.proc.pid, plan, asyncio.Event(), ctx.injected.append)
        ctx.problems.extend(plan.problems)
    return inject


async def _postgres(ctx: _Context) -> None:
    await asyncio.sleep(1.0)  # into the load: the fault's moment, not a synchronisation
    down = await postgres_outage(ctx.postgres, ctx.pg_root, ctx.load.down)
    ctx.injected.append(f"PostgreSQL stopped and started again ({down:.1f} s down)")


async def _nats(ctx: _Context) -> None:
    await asyncio.sleep(1.0)  # into the load: the fault's moment, not a synchronisation
    ctx.owned_nats.append(await restart_nats(nats_data_dir(ctx.berth.data_dir), ctx.load.down))
    ctx.injected.append(f"NATS stopped and started again ({ctx.load.down:.1f} s down)")


LOST_AGENT = "lone-agent"
LOST_AGENT_TIMEOUT = 5.0  # s: BERTH_HEARTBEAT_TIMEOUT in the agent-lost scenario
LOST_AGENT_GRACE = 5.0  # s: BERTH_AGENT_LOST_GRACE, the lost agent's kernels ended after it (60 s by default)
LOST_AGENT_KERNELS = 3  # the lone agent is killed once it holds this many kernels


async def _start_lone_agent(ctx: _Context) -> None:
    """Before the load: the agent to be lost runs, in a process of its own, and is ALIVE."""
    instance = read_instance(ctx.berth.data_dir)
    ctx.lone_agent = LoneAgent(LOST_AGENT, ctx.berth.data_dir.parent / LOST_AGENT, ctx.berth.env,
                               str(instance.nats_url), CAPACITY)  # the capacity of the others: its share of the load
    ctx.lone_agent.start()
    assert ctx.endpoint is not None
    async with ctx.endpoint.client() as client:
        await ctx.lone_agent.wait_for(client, "ALIVE", lambda row: row["status"] == "ALIVE", ctx.load.timeout)


async def _lose_agent(ctx: _Context) -> None:
    """Once the lone agent holds kernels (the load's sessions), SIGKILLs it for good and waits for the
    controller to mark it LOST."""
    agent = ctx.lone_agent
    assert agent is not None and ctx.endpoint is not None
    async with ctx.endpoint.client() as client:
        try:
            await agent.wait_for(client, f"holding {LOST_AGENT_KERNELS} kernels",
                                 lambda row: int(row["kernelCount"] or 0) >= LOST_AGENT_KERNELS, ctx.load.timeout)
            pid = agent.kill()
            ctx.injected.append(f"SIGKILL agent {LOST_AGENT} (pid {pid}) for good, holding kernels")
            await agent.wait_for(client, "lost", lambda row: row["status"] == "LOST", ctx.load.timeout)
            ctx.injected.append(f"agent {LOST_AGENT} marked LOST")
        except RuntimeError as exc:
            ctx.problems.append(str(exc))


def _start_cluster(ctx: _Context) -> None:
    """Before `berth up`: the 3-node NATS cluster it is to use, with R3 streams."""
    ctx.cluster = NatsCluster(ctx.berth.data_dir.parent / "nats-cluster", nats_data_dir(ctx.berth.data_dir) / "auth")
    ctx.berth.env.update({"BERTH_NATS_URL": ctx.cluster.start(), "BERTH_STREAM_REPLICAS": "3",
                          "BERTH_NATS_CREDS": str(ctx.cluster.admin_credentials())})


async def _cluster_node(ctx: _Context) -> None:
    await asyncio.sleep(1.0)  # into the load: the fault's moment, not a synchronisation
    assert ctx.cluster is not None
    replicas = await ctx.cluster.stream_replicas(EVENTS_STREAM)
    if replicas != 3:
        ctx.problems.append(f"{EVENTS_STREAM} has {replicas} replicas, not 3")
    pid = ctx.cluster.kill(0)
    ctx.injected.append(f"SIGKILL NATS node 0 of 3 (pid {pid}) for good; {EVENTS_STREAM} had {replicas} replicas")


SCENARIOS: dict[str, Inject] = {
    "sigkill relay+controller+scheduler": _kills(["relay", "controller", "scheduler"]),
    "sigkill every service": _kills(SERVICES),
    "postgresql stop/start": _postgres,
    "nats restart": _nats,
    "agent lost for good": _lose_agent,
    "nats cluster node lost": _cluster_node,
}
BEFORE_UP: dict[str, Callable[[_Context], None]] = {"nats cluster node lost": _start_cluster}
"""What a scenario needs before `berth up` starts."""
PREPARE: dict[str, Inject] = {"agent lost for good": _start_lone_agent}
"""What a scenario needs running before the load starts."""
HEARTBEAT_TIMEOUT = {"agent lost for good": LOST_AGENT_TIMEOUT}


async def run_scenario(fault: str, work_dir: Path, load: Load, say: Callable[[str], None]) -> Outcome:
    """Runs scenario ``fault`` (a key of SCENARIOS) in ``work_dir``; stops everything it started."""
    inject = SCENARIOS[fault]
    pg_root = work_dir / "postgres"
    postgres = EmbeddedPostgres()
    admin_dsn = await asyncio.to_thread(postgres.start, pg_root)
    berth = BerthUp(work_dir / "berth", ensure_database(admin_dsn), load.agents, None)
    # a killed agent process starts again within a second or two, not a lost agent: no heartbeat timeout
    berth.env["BERTH_HEARTBEAT_TIMEOUT"] = str(HEARTBEAT_TIMEOUT.get(fault, 60))
    berth.env["BERTH_AGENT_LOST_GRACE"] = str(LOST_AGENT_GRACE)
    berth.data_dir.mkdir(parents=True, exist_ok=True)
    ctx = _Context(berth, postgres, pg_root, load)
    try:
        if fault in BEFORE_UP:
            await asyncio.to_thread(BEFORE_UP[fault], ctx)
        instance = await asyncio.to_thread(berth.start)
        endpoint = ctx.endpoint = Endpoint(instance.gateway_url, instance.access_key, instance.secret_key)
        if fault in PREPARE:
            await PREPARE[fault](ctx)
        injection = asyncio.create_task(inject(ctx))
        soak = await run_soak(endpoint, rounds=load.rounds, sessions=load.sessions, clients=load.clients,
                              timeout=load.timeout, log=berth.log, say=say, alive=berth.alive)
        await injection
        lost = sum(r.agent_lost for r in soak.rounds)
        if lost:
            ctx.injected.append(f"{lost} sessions ended with reason agent-lost")
        fault_ended = time.monotonic()
        env = {**berth.env}
        facts = {"pg_dsn": instance.pg_dsn, "nats_url": instance.nats_url, "nats_creds": instance.nats_creds or env.get("BERTH_NATS_CREDS", "")}
        verdict = await judge(env, facts, load.timeout)
        return Outcome(fault, soak, verdict, ctx.injected, ctx.problems, fault_ended)
    finally:
        if ctx.lone_agent is not None:
            ctx.lone_agent.stop()
        berth.stop()
        if ctx.cluster is not None:
            ctx.cluster.stop()
        for server in ctx.owned_nats:
            server.stop()
        with contextlib.suppress(Exception):
            postgres.stop()
