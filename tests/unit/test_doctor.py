"""``berth doctor``'s pure checks, fed read-model rows that do and do not drift."""

from __future__ import annotations

from typing import Any

import pytest

from services.gateway.health.drift import Drift, check_agents, check_quotas, diagnose, persistent


def session(sid: str, status: str = "RUNNING", owner: str = "AK1", project: str = "ml", domain: str = "d",
            cpu: str = "1", mem: str = "1024") -> dict[str, Any]:
    return {"session_id": sid, "status": status, "owner": owner, "project": project, "domain": domain,
            "requested_slots": {"cpu": cpu, "mem": mem}}


def quota(scope: str, name: str, **sessions: dict[str, str]) -> dict[str, Any]:
    total: dict[str, int] = {}
    for slots in sessions.values():
        for k, v in slots.items():
            total[k] = total.get(k, 0) + int(v)
    return {"scope": scope, "name": name, "sessions": sessions, "slots": {k: str(v) for k, v in total.items()}}


def quotas_for(*sessions: dict[str, Any]) -> list[dict[str, Any]]:
    """The quota rows a consistent system has for ``sessions`` (all holding)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for s in sessions:
        for scope, name in (("keypair", s["owner"]), ("project", s["project"]), ("domain", s["domain"])):
            rows.setdefault((scope, name), {})[s["session_id"]] = s["requested_slots"]
    return [quota(scope, name, **held) for (scope, name), held in sorted(rows.items())]


def kernel(kid: str, agent: str | None = "a1", status: str = "RUNNING", cpu: str = "1") -> dict[str, Any]:
    return {"kernel_id": kid, "agent_id": agent, "status": status, "slots": {"cpu": cpu, "mem": "1024"}}


def agent(aid: str, **allocations: str) -> dict[str, Any]:
    cpu = sum(int(v) for v in allocations.values())
    return {"agent_id": aid, "occupied": {"cpu": str(cpu), "mem": str(1024 * len(allocations))} if allocations else {},
            "allocations": {k: {"cpu": v, "mem": "1024"} for k, v in allocations.items()}}


def test_a_consistent_system_is_clean() -> None:
    sessions = [session("s1"), session("s2", "TERMINATING", owner="AK2", cpu="2"), session("s3", "SCHEDULED", domain="e")]
    ended = [session("s4", "TERMINATED"), session("s5", "PENDING"), session("s6", "CANCELLED")]
    quotas = quotas_for(*sessions) + [quota("keypair", "AK9")]  # a scope whose sessions all ended
    kernels = [kernel("k1"), kernel("k2", cpu="2"), kernel("k3", "a2"), kernel("k4", status="TERMINATED"),
               kernel("k5", None, "PENDING")]
    report = diagnose(sessions + ended, kernels, [agent("a1", k1="1", k2="2"), agent("a2", k3="1"), agent("a3")], quotas)
    assert report.clean and report.drifts == []
    assert [(c.name, c.subjects, c.drifts) for c in report.checks] == [("quota", 6, 0), ("agents", 3, 0), ("relay", 1, 0)]


def test_decimal_spellings_and_zero_amounts_do_not_drift() -> None:
    sessions = [session("s1", cpu="1.50")]
    quotas = [{"scope": "keypair", "name": "AK1", "sessions": {"s1": {"cpu": "1.5", "mem": "1024", "cuda.shares": "0"}},
               "slots": {"cpu": "1.5", "mem": "1024"}}]
    check, drifts = check_quotas(sessions, quotas)
    assert {d.subject for d in drifts} == {"project/ml", "domain/d"}  # only the missing scopes
    assert check.drifts == 4


def test_a_quota_never_released_drifts() -> None:
    sessions = [session("s1"), session("s2", "TERMINATED")]
    quotas = quotas_for(session("s1"), session("s2"))
    _, drifts = check_quotas(sessions, quotas)
    assert Drift(kind="quota-sessions", subject="keypair/AK1", expected=["s1"], actual=["s1", "s2"]) in drifts
    assert Drift(kind="quota-slots", subject="project/ml", expected={"cpu": "1", "mem": "1024"},
                 actual={"cpu": "2", "mem": "2048"}) in drifts
    assert len(drifts) == 6


def test_a_session_holding_without_quota_drifts() -> None:
    _, drifts = check_quotas([session("s1", "PREPARING", cpu="4")], [])
    assert {(d.kind, d.subject) for d in drifts} == {
        (kind, subject) for kind in ("quota-sessions", "quota-slots") for subject in ("keypair/AK1", "project/ml", "domain/d")}
    slots = next(d for d in drifts if d.kind == "quota-slots")
    assert (slots.expected, slots.actual) == ({"cpu": "4", "mem": "1024"}, {})


def test_wrong_slots_with_the_right_sessions_drift() -> None:
    quotas = quotas_for(session("s1"))
    quotas[0] = {**quotas[0], "slots": {"cpu": "3", "mem": "1024"}}
    _, drifts = check_quotas([session("s1")], quotas)
    assert [(d.kind, d.subject, d.expected, d.actual) for d in drifts] == [
        ("quota-slots", "domain/d", {"cpu": "1", "mem": "1024"}, {"cpu": "3", "mem": "1024"})]


def test_sessions_without_tenancy_columns_count_in_the_default_scopes() -> None:
    row = {"session_id": "s1", "status": "RUNNING", "owner": "AK1", "requested_slots": {"cpu": "1"}}
    _, drifts = check_quotas([row], [quota("keypair", "AK1", s1={"cpu": "1"}), quota("project", "default", s1={"cpu": "1"}),
                                     quota("domain", "default", s1={"cpu": "1"})])
    assert drifts == []


@pytest.mark.parametrize(
    ("kernels", "agents", "expected_ids", "actual_ids"),
    [
        ([kernel("k1"), kernel("k2", status="TERMINATED")], [agent("a1", k1="1", k2="1")], ["k1"], ["k1", "k2"]),
        ([kernel("k1"), kernel("k2", status="TERMINATING")], [agent("a1", k1="1")], ["k1", "k2"], ["k1"]),
        ([kernel("k1", "ghost")], [], ["k1"], []),
    ],
    ids=["released-kernel-still-allocated", "live-kernel-not-allocated", "unknown-agent"],
)
def test_agent_allocation_drifts(kernels: list, agents: list, expected_ids: list, actual_ids: list) -> None:
    _, drifts = check_agents(kernels, agents)
    members, occupied = drifts
    assert (members.kind, members.expected, members.actual) == ("agent-kernels", expected_ids, actual_ids)
    assert occupied.kind == "agent-occupied" and occupied.subject == members.subject


def test_occupied_slots_that_disagree_with_the_allocations_drift() -> None:
    row = agent("a1", k1="1")
    row["occupied"] = {"cpu": "5", "mem": "1024"}
    check, drifts = check_agents([kernel("k1")], [row])
    assert check.drifts == 1
    assert drifts == [Drift(kind="agent-occupied", subject="agent/a1", expected={"cpu": "1", "mem": "1024"},
                            actual={"cpu": "5", "mem": "1024"})]


def test_only_drifts_seen_twice_persist() -> None:
    first = diagnose([session("s1")], [kernel("k1")], [agent("a1")], [])
    second = diagnose([session("s1")], [kernel("k1")], [agent("a1", k1="1")], quotas_for(session("s1"))[:1])
    report = persistent(first, second)
    assert {(d.kind, d.subject) for d in report.drifts} == {
        (kind, subject) for kind in ("quota-sessions", "quota-slots") for subject in ("keypair/AK1", "project/ml")}
    assert [(c.name, c.drifts) for c in report.checks] == [("quota", 4), ("agents", 0), ("relay", 0)]
    assert persistent(second, diagnose([session("s1")], [kernel("k1")], [agent("a1", k1="1")],
                                       quotas_for(session("s1")))).clean
