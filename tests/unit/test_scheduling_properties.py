"""Hypothesis properties of ``plan``: no agent is over-allocated, no quota is exceeded,
gangs are all-or-nothing, DRF serves the lowest dominant share first, ``too-large`` /
``no-agent`` / ``head-of-line`` follow the agents' capacities, and the same input gives
the same plan whatever the order it arrives in."""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from decimal import Decimal
from fractions import Fraction
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.quota import QuotaScope
from contracts.status import ClusterMode
from contracts.tenancy import KeypairLimits, ResourceGroupOptions, SchedulerPolicy, SelectionStrategy
from domain.scheduling import AgentView, ClusterView, KernelRequest, PendingSession, Plan, Usage, plan

NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
GROUPS = ["default", "gpu"]
OWNERS = ["ak1", "ak2", "ak3"]
PROJECTS = ["p1", "p2"]
DOMAINS = ["d1", "d2"]
SLOTS = ["cpu", "mem", "cuda.device"]
Case = tuple[ClusterView, list[PendingSession]]
PROPERTY = settings(max_examples=75, deadline=None)

halves = st.integers(0, 24).map(lambda n: Decimal(n) / 2)


def amounts(top: int) -> st.SearchStrategy[dict[str, Decimal]]:
    """Slots with cpu in halves, mem in MiB-ish units, sometimes a GPU count."""
    return st.fixed_dictionaries(
        {"cpu": st.integers(0, top * 2).map(lambda n: Decimal(n) / 2), "mem": st.integers(0, top).map(Decimal)},
        optional={"cuda.device": st.integers(0, max(1, top // 4)).map(Decimal)},
    )


def under(draw: st.DrawFn, limit: dict[str, Decimal]) -> dict[str, Decimal]:
    return {k: Decimal(draw(st.integers(0, int(v * 2)))) / 2 for k, v in limit.items() if v > 0}


@st.composite
def agents(draw: st.DrawFn, top: int = 16) -> dict[str, AgentView]:
    out = {}
    for i in range(draw(st.integers(0, 6))):
        capacity = draw(amounts(top))
        occupied = under(draw, capacity)
        out[f"a{i}"] = AgentView(agent_id=f"a{i}", resource_group=draw(st.sampled_from(GROUPS)),
                                 capacity=capacity, occupied=occupied, alive=draw(st.booleans() | st.just(True)))
    return out


@st.composite
def sessions(draw: st.DrawFn, agent_ids: list[str], groups: list[str] = GROUPS) -> list[PendingSession]:
    out = []
    for i in range(draw(st.integers(0, 12))):
        kernels = draw(st.lists(amounts(6), min_size=1, max_size=3))
        designated = draw(st.lists(st.sampled_from(agent_ids), max_size=2)) if agent_ids and draw(st.booleans()) else []
        out.append(PendingSession(
            session_id=f"s{i}",
            owner=draw(st.sampled_from(OWNERS)),
            domain=draw(st.sampled_from(DOMAINS)),
            project=draw(st.sampled_from(PROJECTS)),
            resource_group=draw(st.sampled_from(groups)),
            kernels=tuple(KernelRequest(kernel_id=f"s{i}-k{k}", slots=s) for k, s in enumerate(kernels)),
            requested_at=NOW - dt.timedelta(seconds=draw(st.integers(0, 5))),
            priority=draw(st.sampled_from([5, 10])),
            cluster_mode=draw(st.sampled_from(list(ClusterMode))),
            designated_agents=tuple(designated),
        ))
    return out


group_options = st.builds(
    ResourceGroupOptions,
    scheduler=st.sampled_from(list(SchedulerPolicy)),
    agent_selection=st.sampled_from(list(SelectionStrategy)),
)


@st.composite
def views(draw: st.DrawFn, top: int = 16) -> Case:
    fleet = draw(agents(top))
    pending = draw(sessions(sorted(fleet)))
    limit_slots = st.dictionaries(st.sampled_from(SLOTS), st.integers(0, 12).map(Decimal), max_size=2)
    keypair = {o: KeypairLimits(total_resource_slots=draw(limit_slots), max_concurrent_sessions=draw(st.integers(0, 3)))
               for o in draw(st.lists(st.sampled_from(OWNERS), unique=True))}
    project = {p: draw(limit_slots) for p in draw(st.lists(st.sampled_from(PROJECTS), unique=True))}
    domain = {d: draw(limit_slots) for d in draw(st.lists(st.sampled_from(DOMAINS), unique=True))}
    usage: dict[tuple[QuotaScope, str], Usage] = {}
    for owner in OWNERS:
        limits = keypair.get(owner, KeypairLimits())
        cap = limits.max_concurrent_sessions or 5
        usage[(QuotaScope.KEYPAIR, owner)] = Usage(slots=under(draw, limits.total_resource_slots),
                                                   sessions=draw(st.integers(0, cap)))
    for scope, table in ((QuotaScope.PROJECT, project), (QuotaScope.DOMAIN, domain)):
        for name, limit in table.items():
            usage[(scope, name)] = Usage(slots=under(draw, limit))
    groups = {g: draw(group_options) for g in draw(st.lists(st.sampled_from(GROUPS), unique=True))}
    view = ClusterView(agents=fleet, groups=groups, keypair_limits=keypair, project_limits=project,
                       domain_limits=domain, usage=usage, round_robin={g: draw(st.integers(0, 7)) for g in GROUPS})
    return view, pending


def total(kernels: Any) -> dict[str, Decimal]:
    out: dict[str, Decimal] = defaultdict(Decimal)
    for kernel in kernels:
        for name, amount in kernel.slots.items():
            out[name] += amount
    return out


@PROPERTY
@given(views())
def test_no_agent_is_ever_over_allocated(case: Case) -> None:
    view, pending = case
    result = plan(view, pending, NOW)
    kernels = {k.kernel_id: k for s in pending for k in s.kernels}
    load: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for placement in result.placements:
        for kernel_id, agent_id in placement.kernels:
            for name, amount in kernels[kernel_id].slots.items():
                load[agent_id][name] += amount
    for agent_id, taken in load.items():
        agent = view.agents[agent_id]
        for name, amount in taken.items():
            if amount:
                assert agent.occupied.get(name, 0) + amount <= agent.capacity.get(name, 0), (agent_id, name)


@st.composite
def quota_cases(draw: st.DrawFn) -> Case:
    """Agents with room for everything, so the quotas are what holds sessions back."""
    view, _ = draw(views())
    fleet = {f"a{i}": AgentView(agent_id=f"a{i}", resource_group=g, capacity={n: Decimal(1000) for n in SLOTS},
                                occupied={}) for i, g in enumerate(GROUPS)}
    pending = draw(sessions(sorted(fleet)))
    keypair = {o: msgspec.structs.replace(lim, max_concurrent_sessions=draw(st.integers(0, 6)))
               for o, lim in view.keypair_limits.items()}
    usage = dict(view.usage)
    for owner in OWNERS:
        cap = keypair[owner].max_concurrent_sessions if owner in keypair else 0
        usage[(QuotaScope.KEYPAIR, owner)] = msgspec.structs.replace(
            usage[(QuotaScope.KEYPAIR, owner)], sessions=draw(st.integers(0, cap or 5)))
    return msgspec.structs.replace(view, agents=fleet, keypair_limits=keypair, usage=usage), pending


@PROPERTY
@given(quota_cases())
def test_no_quota_is_ever_exceeded(case: Case) -> None:
    view, pending = case
    result = plan(view, pending, NOW)
    by_id = {s.session_id: s for s in pending}
    used = {key: defaultdict(Decimal, usage.slots) for key, usage in view.usage.items()}
    count = {owner: view.usage[(QuotaScope.KEYPAIR, owner)].sessions for owner in OWNERS}
    for placement in result.placements:
        session = by_id[placement.session_id]
        count[session.owner] += 1
        scopes = [(QuotaScope.KEYPAIR, session.owner), (QuotaScope.PROJECT, session.project),
                  (QuotaScope.DOMAIN, session.domain)]
        for scope in scopes:
            for name, amount in total(session.kernels).items():
                used.setdefault(scope, defaultdict(Decimal))[name] += amount
    limits = {(QuotaScope.KEYPAIR, o): lim.total_resource_slots for o, lim in view.keypair_limits.items()}
    limits |= {(QuotaScope.PROJECT, p): lim for p, lim in view.project_limits.items()}
    limits |= {(QuotaScope.DOMAIN, d): lim for d, lim in view.domain_limits.items()}
    for scope, limit in limits.items():
        for name, most in limit.items():
            assert used.get(scope, {}).get(name, 0) <= most, (scope, name)
    for owner, lim in view.keypair_limits.items():
        if lim.max_concurrent_sessions:
            assert count[owner] <= lim.max_concurrent_sessions


@PROPERTY
@given(views())
def test_gangs_are_all_or_nothing_and_every_session_is_accounted_for(case: Case) -> None:
    view, pending = case
    result = plan(view, pending, NOW)
    by_id = {s.session_id: s for s in pending}
    placed = [p.session_id for p in result.placements]
    assert sorted(placed + list(result.pending) + result.expired) == sorted(by_id)
    for placement in result.placements:
        session = by_id[placement.session_id]
        assert [k for k, _ in placement.kernels] == [k.kernel_id for k in session.kernels]
        hosts = {agent_id for _, agent_id in placement.kernels}
        if session.cluster_mode is ClusterMode.SINGLE_NODE:
            assert len(hosts) == 1
        for agent_id in hosts:
            agent = view.agents[agent_id]
            assert agent.alive and agent.resource_group == session.resource_group
            assert not session.designated_agents or agent_id in session.designated_agents


@PROPERTY
@given(views(), st.randoms(use_true_random=False))
def test_same_input_same_plan_whatever_the_order(case: Case, rnd: random.Random) -> None:
    view, pending = case
    first = msgspec.json.encode(plan(view, pending, NOW))
    assert msgspec.json.encode(plan(view, pending, NOW)) == first
    shuffled_pending = list(pending)
    rnd.shuffle(shuffled_pending)
    agent_items = list(view.agents.items())
    rnd.shuffle(agent_items)
    usage_items = list(view.usage.items())
    rnd.shuffle(usage_items)
    shuffled = msgspec.structs.replace(view, agents=dict(agent_items), usage=dict(usage_items))
    assert msgspec.json.encode(plan(shuffled, shuffled_pending, NOW)) == first


def placement_groups(session: PendingSession) -> list[dict[str, Decimal]]:
    """Returns what must fit one agent: each kernel (multi-node) or their sum (single-node)."""
    if session.cluster_mode is ClusterMode.MULTI_NODE:
        return [kernel.slots for kernel in session.kernels]
    return [total(session.kernels)]


def could_hold(agent: AgentView, request: dict[str, Decimal]) -> bool:
    return all(agent.capacity.get(name, 0) >= amount for name, amount in request.items() if amount)


@PROPERTY
@given(views() | views(top=5))
def test_too_large_no_agent_and_head_of_line_follow_the_capacities(case: Case) -> None:
    view, pending = case
    result = plan(view, pending, NOW)
    members: dict[str, list[AgentView]] = defaultdict(list)
    for agent in view.agents.values():
        if agent.alive:
            members[agent.resource_group].append(agent)
    blockers: set[str] = set()
    for session in pending:
        reason = result.pending.get(session.session_id)
        if reason is None:
            continue
        group = members[session.resource_group]
        ever = [any(could_hold(a, request) for a in group) for request in placement_groups(session)]
        if reason.code == "too-large":
            assert not session.designated_agents and group and not all(ever), session.session_id
        elif reason.code == "no-agent":
            blockers.add(session.resource_group)
            if not session.designated_agents:
                assert not group or all(ever), session.session_id
    for session in pending:
        reason = result.pending.get(session.session_id)
        if reason is not None and reason.code == "head-of-line":
            assert session.resource_group in blockers, session.session_id


@st.composite
def drf_cases(draw: st.DrawFn) -> Case:
    fleet = {f"a{i}": AgentView(agent_id=f"a{i}", resource_group="default",
                                capacity={"cpu": Decimal(1000), "mem": Decimal(4000), "cuda.device": Decimal(500)},
                                occupied=under(draw, {"cpu": Decimal(10), "mem": Decimal(10)}))
             for i in range(draw(st.integers(1, 3)))}
    pending = draw(sessions([], groups=["default"]))
    usage = {(QuotaScope.KEYPAIR, o): Usage(slots=draw(amounts(600))) for o in OWNERS if draw(st.booleans())}
    options = {"default": ResourceGroupOptions(scheduler=SchedulerPolicy.DRF,
                                               agent_selection=draw(st.sampled_from(list(SelectionStrategy))))}
    return ClusterView(agents=fleet, groups=options, usage=usage), pending


def share(view: ClusterView, owner: str) -> Fraction:
    capacity = total(KernelRequest(kernel_id=a.agent_id, slots=a.capacity) for a in view.agents.values())
    usage = view.usage.get((QuotaScope.KEYPAIR, owner), Usage())
    return max((Fraction(usage.slots.get(n, 0)) / Fraction(c) for n, c in capacity.items() if c), default=Fraction(0))


@PROPERTY
@given(drf_cases())
def test_drf_places_first_the_session_of_the_lowest_dominant_share(case: Case) -> None:
    view, pending = case
    result = plan(view, pending, NOW)
    assert len(result.placements) == len(pending), result.pending
    if not pending:
        return
    top = max(s.priority for s in pending)
    band = [s for s in pending if s.priority == top]
    first = next(s for s in pending if s.session_id == result.placements[0].session_id)
    lowest = min(share(view, s.owner) for s in band)
    assert share(view, first.owner) == lowest
    assert first.requested_at == min(s.requested_at for s in band if share(view, s.owner) == lowest)
