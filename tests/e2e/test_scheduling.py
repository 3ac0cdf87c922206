"""Scheduling, tenancy and quotas end to end: `berth up --agents 3` (simulated) driven by the CLI
as an admin and as three tenants with different resource policies."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import psycopg
import pytest

from tests.e2e.conftest import RunningBerth, berth_env, running, tenant
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

TERMINAL = {"TERMINATED", "CANCELLED", "ERROR"}


@pytest.fixture
def cluster(tmp_path: Path, pg_dsn: str) -> Iterator[RunningBerth]:
    """Three simulated agents of cpu=4, mem=8g each."""
    env = berth_env(tmp_path / "berth", BERTH_PG_DSN=pg_dsn, BERTH_AGENTS="3", BERTH_AGENT_CAPACITY="cpu=4,mem=8g")
    with running(tmp_path / "berth", env) as berth:
        yield berth


def by_status(sessions: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for session in sessions:
        counts[session["status"]] = counts.get(session["status"], 0) + 1
    return counts


def usage(berth: RunningBerth) -> dict[str, int]:
    """Returns the number of sessions holding quota in every scope (the quota_usage read model)."""
    with psycopg.connect(str(berth.instance()["pg_dsn"])) as conn:
        rows = conn.execute("SELECT quota_id, session_count FROM quota_usage").fetchall()
    return {quota_id: count for quota_id, count in rows}


def terminate_everything(berth: RunningBerth) -> None:
    def done() -> bool:
        live = [s for s in berth.berth_json("session", "ls", "--all") if s["status"] not in TERMINAL]
        for session in live:
            if session["status"] != "TERMINATING":
                berth.berth("session", "rm", "--no-wait", session["id"], check=False)
        return not live

    wait_for(done, timeout=60, interval=0.5, message="sessions did not all end")


def test_three_tenants_keep_their_limits_and_usage_drains_to_zero(cluster: RunningBerth) -> None:
    cluster.berth("admin", "policy", "create", "two-at-once", "--max-concurrent-sessions", "2")
    cluster.berth("admin", "policy", "create", "three-cpus", "--total-slots", "cpu=3")
    cluster.berth("admin", "policy", "create", "roomy", "--total-slots", "cpu=12,mem=48g")
    alice, bob, carol = (tenant(cluster, "alice", "two-at-once"), tenant(cluster, "bob", "three-cpus"),
                         tenant(cluster, "carol", "roomy"))
    for who in (alice, bob, carol):
        for _ in range(5):
            who.berth("session", "create", "--no-wait", "-r", "cpu=1", "-r", "mem=1g")

    expected = {alice: {"RUNNING": 2, "PENDING": 3}, bob: {"RUNNING": 3, "PENDING": 2}, carol: {"RUNNING": 5}}
    for who, counts in expected.items():
        wait_for(lambda: by_status(who.sessions()) == counts, timeout=60, interval=0.3,
                 message=f"{who.access_key} did not reach {counts}: {by_status(who.sessions())}")
    reasons = {who: {s["pendingCode"] for s in who.sessions() if s["status"] == "PENDING"} for who in (alice, bob)}
    assert reasons == {alice: {"concurrency-limit"}, bob: {"quota-exceeded"}}
    pending = next(s for s in bob.sessions() if s["status"] == "PENDING")
    info = bob.berth("session", "info", pending["id"]).stdout
    assert "quota exceeded" in info and "cpu" in info, info
    assert cluster.berth("doctor").returncode == 0
    bobs = {(u["scope"], u["name"]): u for u in bob.json("usage")}
    assert set(bobs) == {("keypair", bob.access_key), ("project", "default"), ("domain", "default")}, "only bob's scopes"
    assert (bobs[("keypair", bob.access_key)]["used"]["cpu"], bobs[("keypair", bob.access_key)]["limit"]) == ("3", {"cpu": "3"})
    assert bobs[("domain", "default")]["sessions"] == 10
    alices = {u["name"]: u for u in alice.json("usage") if u["scope"] == "keypair"}
    assert (alices[alice.access_key]["sessions"], alices[alice.access_key]["maxSessions"]) == (2, 2)

    terminate_everything(cluster)

    wait_for(lambda: all(count == 0 for count in usage(cluster).values()), timeout=30,
             message=f"quota usage did not drain: {usage(cluster)}")
    assert usage(cluster), "quota was consumed and released"
    assert all(u["sessions"] == 0 and all(v == "0" for v in u["used"].values()) for u in cluster.berth_json("usage"))
    agents = cluster.berth_json("agents", "ls")
    assert [a["kernelCount"] for a in agents] == [0, 0, 0]
    report = cluster.berth_json("doctor")
    assert report["clean"] is True and report["drifts"] == []


def test_a_multi_node_session_lands_on_three_agents_at_once_or_not_at_all(cluster: RunningBerth) -> None:
    gang = ("session", "create", "--cluster-size", "3", "--cluster-mode", "multi-node", "-r", "cpu=3", "-r", "mem=1g")
    first = cluster.berth_json(*gang)
    info = cluster.berth_json("session", "info", first["id"])
    assert info["status"] == "RUNNING"
    assert sorted(k["agentId"] for k in info["kernels"]) == ["local-1", "local-2", "local-3"]

    second = cluster.berth_json(*gang, "--no-wait")
    wait_for(lambda: cluster.berth_json("session", "info", second["id"])["pendingCode"] == "no-agent", timeout=30,
             message="the second gang did not wait for room")
    waiting = cluster.berth_json("session", "info", second["id"])
    assert waiting["status"] == "PENDING" and all(k["agentId"] is None for k in waiting["kernels"])
    assert sorted(a["kernelCount"] for a in cluster.berth_json("agents", "ls")) == [1, 1, 1], "nothing placed in part"

    cluster.berth("session", "rm", first["id"])
    wait_for(lambda: cluster.berth_json("session", "info", second["id"])["status"] == "RUNNING", timeout=30,
             message="the second gang did not start once there was room")
    placed = cluster.berth_json("session", "info", second["id"])
    assert len({k["agentId"] for k in placed["kernels"]}) == 3
    terminate_everything(cluster)
    assert cluster.berth("doctor").returncode == 0


def test_a_user_cannot_see_or_touch_another_users_session(cluster: RunningBerth) -> None:
    alice, bob = tenant(cluster, "alice", "default"), tenant(cluster, "bob", "default")
    session_id = alice.json("session", "create")["id"]

    assert [s["id"] for s in bob.sessions()] == []
    info = bob.berth("session", "info", session_id, check=False)
    assert info.returncode != 0 and "not found" in (info.stdout + info.stderr).lower()
    rm = bob.berth("session", "rm", "--no-wait", session_id, check=False)
    assert rm.returncode != 0 and "not found" in (rm.stdout + rm.stderr).lower()
    events, made_up = bob.berth("events", session_id, check=False), bob.berth("events", "f" * 32, check=False)
    assert events.returncode != 0, "refused, as an id that names nothing is"
    assert (events.stdout + events.stderr).replace(session_id, "ID") == \
        (made_up.stdout + made_up.stderr).replace("f" * 32, "ID"), "nothing tells bob the session exists"
    assert alice.json("session", "info", session_id)["status"] == "RUNNING", "bob changed nothing"
    assert [s["id"] for s in alice.sessions()] == [session_id]
    assert session_id in [s["id"] for s in cluster.berth_json("session", "ls", "--all")], "the superadmin sees it"


def test_rm_cancels_a_pending_session_before_a_running_one_frees_room_for_it(berth_up: RunningBerth) -> None:
    """`berth rm RUNNING PENDING`: had the running session ended first, the pending one would have been
    placed in its room and started (its startup command run) only to be terminated."""
    running_id = berth_up.berth_json("session", "create", "-r", "cpu=4")["id"]  # the whole agent
    queued = berth_up.berth_json("session", "create", "-r", "cpu=4", "-t", "batch", "--startup-command", "true",
                                 "--no-wait")["id"]
    wait_for(lambda: berth_up.berth_json("session", "info", queued)["pendingCode"] == "no-agent", timeout=30,
             message="the second session did not wait for room")

    berth_up.berth("session", "rm", running_id, queued)

    ended = berth_up.berth_json("session", "info", queued)
    assert ended["status"] == "CANCELLED", ended["statusHistory"]
    assert "SCHEDULED" not in ended["statusHistory"]
    assert berth_up.berth_json("session", "info", running_id)["status"] == "TERMINATED"
