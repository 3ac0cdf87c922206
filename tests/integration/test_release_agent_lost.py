"""Agent lost on real PostgreSQL (and NATS for the controller): every kernel of a lost agent is
marked exited with ``agent-lost`` once the grace has passed, the session's kernels on healthy agents
are asked to stop, and the quota of each scope is released exactly once, even across a controller
crash; an agent back within the grace keeps its sessions."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import msgspec
import pytest
from nats.js import JetStreamContext

from contracts import commands as c
from contracts import session as ev
from contracts.quota import QuotaReleased, QuotaScope, quota_id
from contracts.session import KernelPlacement, KernelSpec
from contracts.status import AgentStatus, KernelStatus, Reason, SessionStatus
from domain import agent as agent_domain
from domain import quota as quota_domain
from domain import session as session_domain
from domain.emitting import Emitter
from services.agent.main import run_agent
from services.agent.backends.simulated import SimulatedBackend
from services.application.agents import Agents
from services.application.context import make_context
from services.application.sessions import Sessions
from services.common.settings import Settings
from services.controller.agent_lost import AgentLostSweeper
from services.controller.main import run_controller
from services.relay.main import run_relay
from tests.support.publish import ServiceTasks, service_tasks
from tests.support.waiting import async_wait_for

OWNER, PROJECT, DOMAIN = "AKIA_OWNER", "ml", "research"
SCOPES = [(QuotaScope.KEYPAIR, OWNER), (QuotaScope.PROJECT, PROJECT), (QuotaScope.DOMAIN, DOMAIN)]
GIB = Decimal(1024**3)


def register(agents: Agents, *agent_ids: str) -> None:
    for agent_id in agent_ids:
        agents.handle(agent_id, c.RegisterAgent(capacity={"cpu": Decimal(8), "mem": 8 * GIB}, backend="simulated",
                                                hostname=agent_id), make_context("test"))


def request(sessions: Sessions, kernels: int = 1) -> str:
    """Records a session of OWNER in PROJECT / DOMAIN; returns its id (kernels ``<id>-k<i>``)."""
    session_id = uuid.uuid4().hex[:12]
    specs = [KernelSpec(kernel_id=f"{session_id}-k{i}", cluster_idx=i, slots={"cpu": Decimal(1), "mem": GIB})
             for i in range(kernels)]
    sessions.record([Emitter(session_id, 0, make_context("test"))(
        ev.SessionRequested, owner=OWNER, spec=ev.SessionSpec(
            name="s", image="python:3.11", kernels=specs, project=PROJECT, domain=DOMAIN,
        ))])
    return session_id


def place(sessions: Sessions, session_id: str, *agent_ids: str) -> None:
    """Schedules, assigns and consumes quota in one transaction, as the scheduler does."""
    ctx = make_context("scheduler")
    state = sessions.get(session_id)
    assert state is not None
    where = {k.kernel_id: agent_ids[i] for i, k in enumerate(state.kernels)}
    events = session_domain.decide(state, c.ScheduleSession(
        placements=[KernelPlacement(kernel_id=k, agent_id=a) for k, a in where.items()]), ctx, session_id)
    agents = {a: agent_domain.replay(sessions.load(a)) for a in set(agent_ids)}
    for kernel in state.kernels:
        agent_id = where[kernel.kernel_id]
        for event in agent_domain.decide(agents[agent_id], c.AssignKernel(
                kernel_id=kernel.kernel_id, session_id=session_id, image=state.spec.image, slots=kernel.slots), ctx, agent_id):
            agents[agent_id] = agent_domain.evolve(agents[agent_id], event)
            events.append(event)
    total = {"cpu": Decimal(len(state.kernels)), "mem": GIB * len(state.kernels)}
    for scope, name in SCOPES:
        qid = quota_id(scope, name)
        events += quota_domain.decide(quota_domain.replay(sessions.load(qid)), c.ConsumeQuota(
            allocations={session_id: total}), ctx, qid)
    assert sessions.record(events) is not None


def holders(sessions: Sessions) -> list[list[str]]:
    return [sorted(getattr(quota_domain.replay(sessions.load(quota_id(s, n))), "holding", {})) for s, n in SCOPES]


def released(sessions: Sessions, session_id: str) -> int:
    return sum(1 for s, n in SCOPES for e in sessions.load(quota_id(s, n))
               if isinstance(e, QuotaReleased) and e.session_id == session_id)


def test_sweeping_a_lost_agent_ends_its_kernels_and_releases_once(apps: tuple[Sessions, Agents]) -> None:
    sessions, agents = apps
    register(agents, "a1", "a2")
    split, local, elsewhere = request(sessions, 2), request(sessions), request(sessions)
    place(sessions, split, "a1", "a2")
    place(sessions, local, "a1")
    place(sessions, elsewhere, "a2")
    sweeper = AgentLostSweeper(sessions, agents)
    assert sweeper.sweep("a1") is True, "an alive agent is not swept"
    assert holders(sessions) == [sorted([split, local, elsewhere])] * 3

    agents.handle("a1", c.MarkAgentLost(last_seen=0.0), make_context("controller"))
    assert sweeper.sweep("a1") is True

    a1, a2 = agents.get("a1"), agents.get("a2")
    assert a1 is not None and a1.status is AgentStatus.LOST and a1.allocations == {}
    assert a2 is not None and a2.allocations[f"{split}-k1"].terminating, "the healthy agent is asked to stop"
    assert not a2.allocations[f"{elsewhere}-k0"].terminating
    gone = sessions.get(local)
    assert gone is not None and gone.status is SessionStatus.TERMINATED
    assert gone.kernels[0].status is KernelStatus.TERMINATED
    half = sessions.get(split)
    assert half is not None and half.status is SessionStatus.TERMINATING
    assert holders(sessions) == [sorted([split, elsewhere])] * 3
    lost_exit = next(e for e in sessions.load(local) if isinstance(e, ev.KernelTerminated))
    assert lost_exit.reason is Reason.AGENT_LOST

    count = sessions.position()
    assert sweeper.sweep("a1") is True
    assert sessions.position() == count, "a second sweep records nothing"

    sessions.report(split, c.MarkKernelExited(kernel_id=f"{split}-k1", exit_code=0, reason=Reason.AGENT_LOST),
                    make_context("agent:a2"))
    assert holders(sessions) == [[elsewhere]] * 3
    assert (released(sessions, split), released(sessions, local), released(sessions, elsewhere)) == (3, 3, 0)


# ---------------------------------------------------------------- through the controller


@pytest.fixture
def settings(nats_url: str, pg_dsn: str) -> Settings:
    # These tests lose an agent on purpose, but the healthy one must never be lost: 30 missed beats
    # is longer than a busy machine stalls, and still short to wait for.
    # No grace: a lost agent's kernels end at once (the grace has a test of its own).
    return Settings(nats_url=nats_url, pg_dsn=pg_dsn, agent_capacity="cpu=4,mem=8g", sim_delay=0.01,
                    heartbeat_interval=0.1, heartbeat_timeout=3.0, agent_lost_grace=0.0)


@pytest.fixture
async def tasks(js: JetStreamContext, settings: Settings) -> AsyncIterator[ServiceTasks]:
    """Yields the service runner; its services stop before the database is dropped."""
    async with service_tasks() as running:
        yield running


def start_agent(tasks: ServiceTasks, settings: Settings, agent_id: str,
                backend: SimulatedBackend | None = None) -> None:
    """Starts agent ``agent_id``; on ``backend``, to start it again on the kernels it ran."""
    mine = msgspec.structs.replace(settings, agent_id=agent_id)
    node = backend or SimulatedBackend(delay=0.01)
    tasks.start(agent_id, lambda stop: run_agent(mine, stop, backend=node))


async def status_of(sessions: Sessions, session_id: str) -> SessionStatus | None:
    state = await asyncio.to_thread(sessions.get, session_id)
    return None if state is None else state.status


async def wait_status(sessions: Sessions, session_id: str, status: SessionStatus, timeout: float = 20) -> None:
    await async_wait_for(lambda: _is(sessions, session_id, status), timeout=timeout,
                         message=f"session {session_id} did not become {status.value}")


async def _is(sessions: Sessions, session_id: str, status: SessionStatus) -> bool:
    return await status_of(sessions, session_id) is status


async def test_a_lost_agent_ends_the_session_and_its_kernel_on_a_healthy_agent(
    tasks: ServiceTasks, settings: Settings, apps: tuple[Sessions, Agents]
) -> None:
    sessions, agents = apps
    tasks.start("relay", lambda stop: run_relay(settings, stop))
    tasks.start("controller", lambda stop: run_controller(settings, stop))
    start_agent(tasks, settings, "a1")
    start_agent(tasks, settings, "a2")
    await async_wait_for(lambda: asyncio.to_thread(lambda: agents.get("a1") and agents.get("a2")), timeout=15)
    session_id = await asyncio.to_thread(request, sessions, 2)
    await asyncio.to_thread(place, sessions, session_id, "a1", "a2")
    await wait_status(sessions, session_id, SessionStatus.RUNNING)

    await tasks.stop("a1")
    await wait_status(sessions, session_id, SessionStatus.TERMINATED)

    state = await asyncio.to_thread(sessions.get, session_id)
    assert state is not None and all(k.status is KernelStatus.TERMINATED for k in state.kernels)
    last = [e for e in await asyncio.to_thread(sessions.load, session_id) if isinstance(e, ev.SessionStatusChanged)][-1]
    assert last.reason is Reason.AGENT_LOST
    a1, a2 = await asyncio.to_thread(agents.get, "a1"), await asyncio.to_thread(agents.get, "a2")
    assert a1 is not None and a1.status is AgentStatus.LOST and a1.allocations == {}
    assert a2 is not None and a2.allocations == {}
    assert await asyncio.to_thread(released, sessions, session_id) == 3
    assert await asyncio.to_thread(holders, sessions) == [[]] * 3
    tasks.check()


async def test_a_controller_that_crashed_after_agent_lost_sweeps_at_start(
    tasks: ServiceTasks, settings: Settings, apps: tuple[Sessions, Agents]
) -> None:
    sessions, agents = apps
    await asyncio.to_thread(register, agents, "a1")
    session_id = await asyncio.to_thread(request, sessions)
    await asyncio.to_thread(place, sessions, session_id, "a1")
    # the controller recorded AgentLost, then crashed before marking the kernels exited
    await asyncio.to_thread(agents.handle, "a1", c.MarkAgentLost(last_seen=0.0), make_context("controller"))

    tasks.start("relay", lambda stop: run_relay(settings, stop))
    tasks.start("controller", lambda stop: run_controller(settings, stop))
    await wait_status(sessions, session_id, SessionStatus.TERMINATED)
    a1 = await asyncio.to_thread(agents.get, "a1")
    assert a1 is not None and a1.allocations == {}
    assert await asyncio.to_thread(released, sessions, session_id) == 3
    tasks.check()


async def test_an_agent_back_within_the_grace_keeps_its_sessions(
    tasks: ServiceTasks, settings: Settings, apps: tuple[Sessions, Agents]
) -> None:
    """An agent silent for longer than the heartbeat timeout (a stalled process, a paused VM), whose
    containers ran on, is lost; back before the grace ends, it keeps every session it ran."""
    sessions, agents = apps
    settings = msgspec.structs.replace(settings, agent_lost_grace=3600.0)
    node = SimulatedBackend(delay=0.01)  # the node: its kernels run on while the agent is away
    tasks.start("relay", lambda stop: run_relay(settings, stop))
    tasks.start("controller", lambda stop: run_controller(settings, stop))
    start_agent(tasks, settings, "a1", node)
    await async_wait_for(lambda: asyncio.to_thread(agents.get, "a1"), timeout=15)
    session_id = await asyncio.to_thread(request, sessions)
    await asyncio.to_thread(place, sessions, session_id, "a1")
    await wait_status(sessions, session_id, SessionStatus.RUNNING)

    await tasks.stop("a1")
    await async_wait_for(lambda: _agent_is(agents, "a1", AgentStatus.LOST), timeout=30, message="a1 was not lost")
    start_agent(tasks, settings, "a1", node)
    await async_wait_for(lambda: _agent_is(agents, "a1", AgentStatus.ALIVE), timeout=30, message="a1 did not recover")

    state = await asyncio.to_thread(sessions.get, session_id)
    assert state is not None and state.status is SessionStatus.RUNNING
    assert [k.status for k in state.kernels] == [KernelStatus.RUNNING]
    history = await asyncio.to_thread(sessions.load, session_id)
    assert not [e for e in history if isinstance(e, ev.KernelTerminated)], "no kernel ended"
    a1 = await asyncio.to_thread(agents.get, "a1")
    assert a1 is not None and list(a1.allocations) == [f"{session_id}-k0"]
    assert await asyncio.to_thread(released, sessions, session_id) == 0
    assert await asyncio.to_thread(holders, sessions) == [[session_id]] * 3
    tasks.check()


async def _agent_is(agents: Agents, agent_id: str, status: AgentStatus) -> bool:
    state = await asyncio.to_thread(agents.get, agent_id)
    return state is not None and state.status is status
