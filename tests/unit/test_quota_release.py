"""Quota release on every exit path of a session (Sessions use cases on the in-memory store)."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from decimal import Decimal
from typing import Iterator

import pytest

from contracts import commands as c
from contracts import session as ev
from contracts.envelope import Event, Metadata
from contracts.quota import QuotaReleased, QuotaScope, quota_id
from contracts.session import KernelPlacement, KernelSpec
from contracts.status import Reason, SessionStatus
from domain import agent as agent_domain
from domain import quota as quota_domain
from domain import session as session_domain
from domain.emitting import Context, Emitter
from services.application.sessions import Sessions, was_scheduled

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
OWNER, PROJECT, DOMAIN = "AKIA_ALICE", "ml", "research"
SCOPES = [(QuotaScope.KEYPAIR, OWNER), (QuotaScope.PROJECT, PROJECT), (QuotaScope.DOMAIN, DOMAIN)]
_ids = itertools.count(1)


def ctx() -> Context:
    return Context(now=NOW, metadata=Metadata(actor="test", correlation_id=uuid.uuid4().hex),
                   new_id=lambda: uuid.UUID(int=next(_ids)))


def slots(cpu: int) -> dict[str, Decimal]:
    return {"cpu": Decimal(cpu), "mem": Decimal(1024)}


@pytest.fixture
def app() -> Iterator[Sessions]:
    sessions = Sessions(None)
    for agent_id in ("a1", "a2"):
        sessions.record(agent_domain.decide(
            None, c.RegisterAgent(capacity={"cpu": Decimal(16), "mem": Decimal(2**40)}, backend="sim", hostname=agent_id),
            ctx(), agent_id))
    yield sessions
    sessions.close()


def request(app: Sessions, session_id: str, *cpus: int) -> None:
    """Records a session of OWNER in PROJECT / DOMAIN with one kernel per cpu amount."""
    kernels = [KernelSpec(kernel_id=f"{session_id}-k{i}", cluster_idx=i, slots=slots(cpu)) for i, cpu in enumerate(cpus or (1,))]
    app.record([Emitter(session_id, 0, ctx())(
        ev.SessionRequested, owner=OWNER,
        spec=ev.SessionSpec(name="n", image="python", kernels=kernels, domain=DOMAIN, project=PROJECT))])


def place(app: Sessions, session_id: str, *agents: str) -> None:
    """Places the session as the scheduler does: scheduled, assigned and consumed in one transaction."""
    state = app.get(session_id)
    assert state is not None
    context = ctx()
    where = {k.kernel_id: (agents[i] if i < len(agents) else "a1") for i, k in enumerate(state.kernels)}
    events = session_domain.decide(state, c.ScheduleSession(
        placements=[KernelPlacement(kernel_id=k, agent_id=a) for k, a in where.items()]), context, session_id)
    for kernel in state.kernels:
        agent_id = where[kernel.kernel_id]
        agent = agent_domain.replay(app.load(agent_id))
        events += agent_domain.decide(agent, c.AssignKernel(
            kernel_id=kernel.kernel_id, session_id=session_id, image="python", slots=kernel.slots), context, agent_id)
    total = {"cpu": sum(k.slots["cpu"] for k in state.kernels), "mem": sum(k.slots["mem"] for k in state.kernels)}
    for scope, name in SCOPES:
        qid = quota_id(scope, name)
        events += quota_domain.decide(quota_domain.replay(app.load(qid)), c.ConsumeQuota(allocations={session_id: total}),
                                      context, qid)
    app.record(events)


def start(app: Sessions, session_id: str) -> None:
    state = app.get(session_id)
    assert state is not None
    for kernel in state.kernels:
        app.report(session_id, c.MarkKernelStarted(kernel_id=kernel.kernel_id, container_id="c"), ctx())


def exit_kernel(app: Sessions, session_id: str, index: int = 0, reason: Reason = Reason.SELF_TERMINATED) -> int | None:
    return app.report(session_id, c.MarkKernelExited(kernel_id=f"{session_id}-k{index}", exit_code=0, reason=reason), ctx())


def holding(app: Sessions) -> dict[tuple[QuotaScope, str], list[str]]:
    held = {}
    for scope, name in SCOPES:
        state = quota_domain.replay(app.load(quota_id(scope, name)))
        held[(scope, name)] = sorted(state.holding) if state else []
    return held


def releases(app: Sessions, session_id: str) -> list[QuotaReleased]:
    return [e for scope, name in SCOPES for e in app.load(quota_id(scope, name))
            if isinstance(e, QuotaReleased) and e.session_id == session_id]


def log(app: Sessions) -> list[Event]:
    """Every event of the store, in notification order."""
    return [app.mapper.to_domain_event(n) for n in app.recorder.select_notifications(start=1, limit=10_000)]


def test_a_terminated_session_releases_each_scope_in_the_same_transaction(app: Sessions) -> None:
    request(app, "s1", 2)
    request(app, "s2", 1)
    place(app, "s1")
    place(app, "s2")
    start(app, "s1")
    assert holding(app) == {scope: ["s1", "s2"] for scope in SCOPES}

    position = exit_kernel(app, "s1")

    state = app.get("s1")
    assert state is not None and state.status is SessionStatus.TERMINATED
    assert holding(app) == {scope: ["s2"] for scope in SCOPES}
    released = releases(app, "s1")
    assert [(e.scope, e.name, e.slots) for e in released] == [(s, n, slots(2)) for s, n in SCOPES]
    tail = log(app)[-5:]  # kernel terminated, status changed, kernel released, 3 × quota released
    assert position == app.position()
    assert {type(e).type_name() for e in tail[-3:]} == {"quota.released"}
    assert len({e.metadata.correlation_id for e in tail}) == 1, "one decision, one transaction"


def test_a_duplicate_exit_report_releases_nothing_more(app: Sessions) -> None:
    request(app, "s1")
    place(app, "s1")
    start(app, "s1")
    exit_kernel(app, "s1")
    before = app.position()
    assert exit_kernel(app, "s1") is None
    assert app.position() == before
    assert len(releases(app, "s1")) == 3


def test_a_user_termination_releases_once_the_kernels_exit(app: Sessions) -> None:
    request(app, "s1")
    place(app, "s1")
    start(app, "s1")
    app.terminate("s1", ctx())
    state = app.get("s1")
    assert state is not None and state.status is SessionStatus.TERMINATING
    assert releases(app, "s1") == [], "a terminating session still holds its resources"
    exit_kernel(app, "s1", reason=Reason.USER_REQUESTED)
    assert len(releases(app, "s1")) == 3 and holding(app) == {scope: [] for scope in SCOPES}


def test_a_kernel_that_failed_to_start_releases_the_quota(app: Sessions) -> None:
    request(app, "s1")
    place(app, "s1")
    exit_kernel(app, "s1", reason=Reason.FAILED_TO_START)
    state = app.get("s1")
    assert state is not None and state.status is SessionStatus.ERROR
    assert len(releases(app, "s1")) == 3


def test_a_multi_kernel_session_releases_once_when_its_last_kernel_exits(app: Sessions) -> None:
    request(app, "s1", 1, 2)
    place(app, "s1", "a1", "a2")
    start(app, "s1")
    exit_kernel(app, "s1", 0, Reason.AGENT_LOST)
    state = app.get("s1")
    assert state is not None and state.status is SessionStatus.TERMINATING
    assert releases(app, "s1") == []
    agent2 = agent_domain.replay(app.load("a2"))
    assert agent2 is not None and agent2.allocations["s1-k1"].terminating, "the healthy agent is asked to stop"
    exit_kernel(app, "s1", 1)
    assert [e.slots for e in releases(app, "s1")] == [{"cpu": Decimal(3), "mem": Decimal(2048)}] * 3


def test_a_pending_session_cancelled_never_touches_the_quota(app: Sessions) -> None:
    request(app, "s1")
    request(app, "s2")
    place(app, "s2")
    before = {scope: quota_domain.replay(app.load(quota_id(*scope))) for scope in SCOPES}
    app.terminate("s1", ctx())
    state = app.get("s1")
    assert state is not None and state.status is SessionStatus.CANCELLED and not was_scheduled(state)
    assert {scope: quota_domain.replay(app.load(quota_id(*scope))) for scope in SCOPES} == before


def test_a_scheduled_session_without_recorded_quota_ends_cleanly(app: Sessions) -> None:
    """History from before quotas: nothing to release, no error, no event."""
    request(app, "s1")
    state = app.get("s1")
    assert state is not None
    app.record(session_domain.decide(state, c.ScheduleSession(placements=[KernelPlacement(kernel_id="s1-k0", agent_id="a1")]),
                                     ctx(), "s1"))
    exit_kernel(app, "s1")
    state = app.get("s1")
    assert state is not None and state.status is SessionStatus.TERMINATED
    assert holding(app) == {scope: [] for scope in SCOPES}
    assert not any(type(e).type_name().startswith("quota.") for e in log(app))


def test_session_state_keeps_the_tenancy_fields_of_the_request(app: Sessions) -> None:
    starts = NOW + dt.timedelta(hours=1)
    app.record([Emitter("s9", 0, ctx())(
        ev.SessionRequested, owner=OWNER, spec=ev.SessionSpec(
            name="n", image="python", kernels=[KernelSpec(kernel_id="k", slots=slots(1))],
            user="alice", domain=DOMAIN, project=PROJECT, resource_group="gpu", priority=50, batch_timeout=30,
            starts_at=starts, dependencies=["s1"], designated_agents=["a2"]))])
    state = app.get("s9")
    assert state is not None
    spec = state.spec
    assert (spec.user, spec.domain, spec.project, spec.resource_group, spec.priority, spec.batch_timeout,
            spec.starts_at, spec.dependencies, spec.designated_agents) == (
        "alice", DOMAIN, PROJECT, "gpu", 50, 30, starts, ["s1"], ["a2"])
