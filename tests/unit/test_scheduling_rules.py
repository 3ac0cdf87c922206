"""Table tests of the validators, quotas, head-of-line, too-large, expiry and wake-up of ``plan``.

Each row: agents, sessions, view extras (options, limits, usage) -> expected agent per
placed session and expected pending code per waiting session.

``no-agent`` (and so ``head-of-line`` for the sessions behind) needs a request that
some agent could hold if it were empty; a request larger than every alive agent of
the group is ``too-large`` and does not block the line.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from contracts.quota import QuotaScope
from contracts.status import SessionType
from contracts.tenancy import KeypairLimits, ResourceGroupOptions
from domain.scheduling import AgentView, ClusterView, KernelRequest, PendingSession, Plan, Usage, plan

NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
GIB = 1024**3


def slots(cpu: float | str = 0, mem: int = 0) -> dict[str, Decimal]:
    return {"cpu": Decimal(str(cpu)), "mem": Decimal(mem * GIB)}


def agent(agent_id: str, cpu: int = 8, mem: int = 32, *, used: tuple = (0, 0), group: str = "default",
          alive: bool = True) -> AgentView:
    return AgentView(agent_id=agent_id, resource_group=group, capacity=slots(cpu, mem), occupied=slots(*used),
                     alive=alive)


def session(session_id: str, cpu: float | str = 1, mem: int = 1, *, age: int = 0, **kw: Any) -> PendingSession:
    """A one-kernel session requested ``age`` seconds before NOW (older = earlier in FIFO)."""
    base: dict[str, Any] = dict(owner="ak1", domain="d1", project="p1", resource_group="default")
    base.update(kw)
    return PendingSession(
        session_id=session_id,
        kernels=(KernelRequest(kernel_id=f"{session_id}-k0", slots=slots(cpu, mem)),),
        requested_at=NOW - dt.timedelta(seconds=1000 + age),
        **base,
    )


def view(*agents: AgentView, **kw: Any) -> ClusterView:
    return ClusterView(agents={a.agent_id: a for a in agents}, **kw)


def placed(result: Plan) -> dict[str, str]:
    return {p.session_id: p.kernels[0][1] for p in result.placements}


def codes(result: Plan) -> dict[str, str]:
    return {sid: reason.code for sid, reason in result.pending.items()}


@dataclass
class Row:
    name: str
    agents: list[AgentView]
    sessions: list[PendingSession]
    extras: dict[str, Any] = field(default_factory=dict)
    placed: dict[str, str] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)


ONLY_INTERACTIVE = {"default": ResourceGroupOptions(allowed_session_types=[SessionType.INTERACTIVE])}
LIMIT_2_SESSIONS = {"ak1": KeypairLimits(max_concurrent_sessions=2)}
KEYPAIR_4_CPU = {"ak1": KeypairLimits(total_resource_slots={"cpu": Decimal(4)})}

ROWS = [
    Row("fits", [agent("a1")], [session("s1")], placed={"s1": "a1"}),
    Row("session type not allowed", [agent("a1")],
        [session("s1", session_type=SessionType.BATCH), session("s2", age=-1)],
        {"groups": ONLY_INTERACTIVE}, placed={"s2": "a1"}, pending={"s1": "session-type"}),
    Row("starts_at in the future", [agent("a1")],
        [session("s1", starts_at=NOW + dt.timedelta(minutes=5)), session("s2", starts_at=NOW)],
        placed={"s2": "a1"}, pending={"s1": "starts-at"}),
    Row("dependencies", [agent("a1")],
        [session("ok", dependencies=("d-ok",)), session("unknown", dependencies=("d-ok", "d-new")),
         session("failed", dependencies=("d-bad", "d-new"))],
        {"finished": {"d-ok": True, "d-bad": False}},
        placed={"ok": "a1"}, pending={"unknown": "dependency", "failed": "dependency"}),
    Row("concurrency counts usage and this pass", [agent("a1")], [session("s1", age=2), session("s2", age=1)],
        {"keypair_limits": LIMIT_2_SESSIONS, "usage": {(QuotaScope.KEYPAIR, "ak1"): Usage(sessions=1)}},
        placed={"s1": "a1"}, pending={"s2": "concurrency-limit"}),
    Row("concurrency 0 is unlimited", [agent("a1")], [session("s1")],
        {"keypair_limits": {"ak1": KeypairLimits(max_concurrent_sessions=0)},
         "usage": {(QuotaScope.KEYPAIR, "ak1"): Usage(sessions=50)}},
        placed={"s1": "a1"}),
    Row("keypair quota counts this pass", [agent("a1")], [session("s1", 3, age=2), session("s2", 2, age=1)],
        {"keypair_limits": KEYPAIR_4_CPU}, placed={"s1": "a1"}, pending={"s2": "quota-exceeded"}),
    Row("quota failure does not block later sessions", [agent("a1")],
        [session("big", 5, age=2), session("small", 1, age=1)],
        {"keypair_limits": KEYPAIR_4_CPU}, placed={"small": "a1"}, pending={"big": "quota-exceeded"}),
    Row("absent slot in limits is unlimited", [agent("a1", mem=512)], [session("s1", 1, 400)],
        {"keypair_limits": KEYPAIR_4_CPU}, placed={"s1": "a1"}),
    Row("project quota", [agent("a1")], [session("s1", 2, project="px"), session("s2", 2, project="py")],
        {"project_limits": {"px": {"cpu": Decimal(1)}}}, placed={"s2": "a1"}, pending={"s1": "quota-exceeded"}),
    Row("domain quota with usage", [agent("a1")], [session("s1", 1, 2)],
        {"domain_limits": {"d1": {"mem": Decimal(4 * GIB)}},
         "usage": {(QuotaScope.DOMAIN, "d1"): Usage(slots={"mem": Decimal(3 * GIB)})}},
        pending={"s1": "quota-exceeded"}),
    Row("no agent has room now", [agent("a1", 8, used=(6, 0))], [session("s1", 4)], pending={"s1": "no-agent"}),
    Row("larger than every agent is too-large", [agent("a1", 2), agent("a2", 3)], [session("s1", 4)],
        pending={"s1": "too-large"}),
    Row("too-large is judged on capacity, not on free slots",
        [agent("a1", 4), agent("a2", 16, used=(10, 0))], [session("s1", 8)], pending={"s1": "no-agent"}),
    Row("too-large when no single agent has every slot", [agent("cpu", 16, 4), agent("mem", 2, 64)],
        [session("s1", 8, 16)], pending={"s1": "too-large"}),
    Row("a dead or foreign big agent does not count",
        [agent("a1", 2), agent("dead", 64, alive=False), agent("g1", 64, group="gpu")],
        [session("s1", 8, age=1), session("s2", 1)], placed={"s2": "a1"}, pending={"s1": "too-large"}),
    Row("too-large does not block later sessions", [agent("a1", 4)],
        [session("huge", 8, age=2), session("small", 1, age=1)], placed={"small": "a1"}, pending={"huge": "too-large"}),
    Row("fits an empty agent but none has room: no-agent, then head-of-line",
        [agent("a1", 8, used=(4, 0)), agent("a2", 8, used=(5, 0))],
        [session("wide", 6, age=3), session("small", 1, age=2), session("tiny", "0.5", age=1)],
        pending={"wide": "no-agent", "small": "head-of-line", "tiny": "head-of-line"}),
    Row("too-large then no-agent then head-of-line", [agent("a1", 8, used=(4, 0))],
        [session("huge", 9, age=3), session("wide", 6, age=2), session("small", 1, age=1)],
        pending={"huge": "too-large", "wide": "no-agent", "small": "head-of-line"}),
    Row("dead and foreign agents are ignored", [agent("a1", alive=False), agent("a2", group="gpu")],
        [session("s1")], pending={"s1": "no-agent"}),
    Row("occupied slots count", [agent("a1", 8, used=(7, 0)), agent("a2", 8, used=(6, 0))],
        [session("s1", 2)], placed={"s1": "a2"}),
    Row("over-committed agent is skipped", [agent("a1", 8, used=(9, 0)), agent("a2", 8, used=(6, 0))],
        [session("s1", "0.5")], placed={"s1": "a2"}),
    Row("fractional cpu is exact", [agent("a1", 1)], [session("s1", "0.3", age=3), session("s2", "0.3", age=2),
        session("s3", "0.4", age=1), session("s4", "0.1")],
        placed={"s1": "a1", "s2": "a1", "s3": "a1"}, pending={"s4": "no-agent"}),
    Row("head of line blocks later sessions of the group only",
        [agent("a1", 8, used=(4, 0)), agent("g1", 4, group="gpu")],
        [session("big", 8, age=3), session("small", 1, age=2), session("other", 1, age=1, resource_group="gpu")],
        placed={"other": "g1"}, pending={"big": "no-agent", "small": "head-of-line"}),
    Row("head of line keeps a later session's own refusal", [agent("a1", 8, used=(4, 0))],
        [session("big", 8, age=3), session("dep", 1, age=2, dependencies=("x",)), session("small", 1, age=1)],
        pending={"big": "no-agent", "dep": "dependency", "small": "head-of-line"}),
    Row("head of line spans priority bands", [agent("a1", 8, used=(4, 0))],
        [session("big", 8, priority=20), session("low", 1, age=5, priority=5)],
        pending={"big": "no-agent", "low": "head-of-line"}),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_rules(row: Row) -> None:
    result = plan(view(*row.agents, **row.extras), row.sessions, NOW)
    assert placed(result) == row.placed
    assert codes(result) == row.pending


def test_messages_name_the_numbers() -> None:
    result = plan(
        view(agent("a1", 2), keypair_limits=KEYPAIR_4_CPU, project_limits={"p1": {"cpu": Decimal(3)}},
             domain_limits={"d1": {"mem": Decimal(GIB)}}),
        [session("big", 5, 2, age=2), session("fat", 3, 4, owner="ak2", age=1)],
        NOW,
    )
    assert result.pending["big"].message == (
        "quota exceeded: keypair 'ak1' cpu: 0 in use + 5 requested > limit 4; "
        "project 'p1' cpu: 0 in use + 5 requested > limit 3; "
        "domain 'd1' mem: 0 B in use + 2 GiB requested > limit 1 GiB"
    )
    assert result.pending["fat"].code == "quota-exceeded"
    no_room = plan(view(agent("a1", 4, used=(3, 0))), [session("s1", 2, 4)], NOW).pending["s1"]
    assert no_room.message == "no agent in resource group 'default' has 2 cpu, 4 GiB mem free"
    huge = plan(view(agent("a1", 1), agent("a2", 2, 64)), [session("s1", 3, 40)], NOW).pending["s1"]
    assert huge.code == "too-large"
    assert huge.message == (
        "no agent in resource group 'default' can ever hold 3 cpu, 40 GiB mem "
        "(larger than every agent's capacity); waiting for a larger agent"
    )
    nobody = plan(view(), [session("s1")], NOW).pending["s1"]
    assert nobody.message == "no alive agent in resource group 'default'"


def test_validator_messages() -> None:
    at = NOW + dt.timedelta(hours=1)
    result = plan(
        view(agent("a1"), groups=ONLY_INTERACTIVE, finished={"d-bad": False},
             keypair_limits={"ak2": KeypairLimits(max_concurrent_sessions=1)},
             usage={(QuotaScope.KEYPAIR, "ak2"): Usage(sessions=1)}),
        [session("batch", session_type=SessionType.BATCH), session("later", starts_at=at),
         session("dep", dependencies=("d-new", "d-bad")), session("wait", dependencies=("d-new",)),
         session("busy", owner="ak2")],
        NOW,
    )
    messages = {sid: r.message for sid, r in result.pending.items()}
    assert messages["batch"] == "resource group 'default' does not allow batch sessions (allowed: interactive)"
    assert messages["later"] == f"scheduled to start at {at.isoformat()}"
    assert messages["dep"] == "dependency d-bad failed; this session cannot start"
    assert messages["wait"] == "waiting for d-new to finish successfully"
    assert messages["busy"] == "keypair 'ak2' holds 1 sessions, its limit is 1 concurrent sessions"


def test_head_of_line_message_is_stable_and_does_not_name_the_blocker() -> None:
    busy = agent("a1", 16, used=(12, 0))
    sessions = [session("blocker-1", 8, age=2), session("s2", 1, age=1)]
    first = plan(view(busy), sessions, NOW)
    second = plan(view(busy), [session("blocker-2", 16, age=5), *sessions], NOW)
    assert codes(first) == {"blocker-1": "no-agent", "s2": "head-of-line"}
    assert codes(second) == {"blocker-2": "no-agent", "blocker-1": "head-of-line", "s2": "head-of-line"}
    assert first.pending["s2"] == second.pending["s2"]
    assert "blocker" not in first.pending["s2"].message
    assert "default" in first.pending["s2"].message


def test_pending_timeout_expires_sessions_at_the_deadline_and_wakes_for_the_next() -> None:
    options = {"default": ResourceGroupOptions(pending_timeout=1000)}
    sessions = [session("old", age=0), session("older", age=5), session("young", 4, age=-400)]
    result = plan(view(agent("a1", used=(6, 0)), groups=options), sessions, NOW)
    assert result.expired == ["older", "old"]
    assert "old" not in result.pending and not result.placements
    assert codes(result) == {"young": "no-agent"}
    assert result.wake_at == NOW + dt.timedelta(seconds=400)


def test_no_timeout_means_no_expiry() -> None:
    result = plan(view(agent("a1")), [session("ancient", age=10**7)], NOW)
    assert result.expired == [] and placed(result) == {"ancient": "a1"} and result.wake_at is None


def test_wake_at_is_the_earliest_future_start_or_deadline() -> None:
    options = {"gpu": ResourceGroupOptions(pending_timeout=3600)}
    sessions = [
        session("later", starts_at=NOW + dt.timedelta(minutes=30)),
        session("soon", starts_at=NOW + dt.timedelta(minutes=20)),
        session("stuck", resource_group="gpu", age=-1000),
    ]
    result = plan(view(agent("a1")), sessions, NOW)
    assert result.wake_at == NOW + dt.timedelta(minutes=20)
    result = plan(view(agent("a1"), groups=options), sessions, NOW)
    assert result.wake_at == NOW + dt.timedelta(minutes=20)
    options = {"gpu": ResourceGroupOptions(pending_timeout=60)}
    result = plan(view(agent("a1"), groups=options), sessions, NOW)
    assert result.wake_at == NOW + dt.timedelta(seconds=60)


def test_a_placed_session_does_not_set_wake_at() -> None:
    options = {"default": ResourceGroupOptions(pending_timeout=60)}
    result = plan(view(agent("a1"), groups=options), [session("s1", age=-1000)], NOW)
    assert placed(result) == {"s1": "a1"} and result.wake_at is None


def test_over_released_usage_and_occupancy_do_not_break_a_pass() -> None:
    result = plan(
        view(agent("a1", 2, used=(-1, 0)), keypair_limits=KEYPAIR_4_CPU,
             usage={(QuotaScope.KEYPAIR, "ak1"): Usage(slots={"cpu": Decimal(-2)})}),
        [session("s1", 3)],
        NOW,
    )
    assert placed(result) == {"s1": "a1"}


def test_quota_usage_carries_across_resource_groups() -> None:
    sessions = [session("s1", 3, age=1), session("s2", 3, resource_group="gpu")]
    result = plan(view(agent("a1"), agent("g1", group="gpu"), keypair_limits=KEYPAIR_4_CPU), sessions, NOW)
    assert placed(result) == {"s1": "a1"} and codes(result) == {"s2": "quota-exceeded"}


@pytest.mark.parametrize(
    ("pending", "message"),
    [
        ([session("s1"), session("s1")], "pending twice"),
        ([PendingSession(session_id="s0", owner="a", domain="d", project="p", resource_group="default",
                         kernels=(), requested_at=NOW)], "no kernels"),
        ([session("neg", -1)], "kernel 'neg-k0' asks for -1 cpu"),
        ([session("nan", "NaN")], "not a finite number"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(pending: list[PendingSession], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan(view(agent("a1")), pending, NOW)
