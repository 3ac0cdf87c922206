"""The ``agents`` read model, fed hand-built events through the runner on a real PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

from contracts import agent as ag
from contracts.status import Reason
from tests.support.projections import Builder, Feeder, at, build, feed, read_models, slots  # noqa: F401

GIB = 1024**3


def agent(feed: Feeder, agent_id: str = "a1") -> dict:
    cur = feed.conn.execute("SELECT * FROM agents WHERE agent_id = %s", (agent_id,))
    names = [c.name for c in cur.description]
    row = cur.fetchone()
    assert row is not None
    return dict(zip(names, row))


def assign(build: Builder, kernel_id: str, amount: dict[str, Decimal], agent_id: str = "a1") -> ag.KernelAssigned:
    return build(ag.KernelAssigned, agent_id, kernel_id=kernel_id, session_id=f"s-{kernel_id}", image="py", slots=amount)


def release(build: Builder, kernel_id: str, agent_id: str = "a1") -> ag.KernelReleased:
    return build(ag.KernelReleased, agent_id, kernel_id=kernel_id, session_id=f"s-{kernel_id}")


def test_registered_agent_is_alive_and_empty(feed: Feeder, build: Builder) -> None:
    feed.apply(build.registered("a1", cpu="8", mem=str(16 * GIB), cuda_device="2"))
    row = agent(feed)
    assert (row["hostname"], row["backend"], row["status"]) == ("a1.local", "process", "ALIVE")
    assert row["capacity"] == {"cpu": "8", "mem": str(16 * GIB), "cuda.device": "2"}
    assert (row["occupied"], row["kernel_count"], row["allocations"]) == ({}, 0, {})
    assert (row["registered_at"], row["updated_at"], row["version"]) == (at(1), at(1), 1)


def test_assignments_add_and_releases_subtract_exactly_their_slots(feed: Feeder, build: Builder) -> None:
    feed.apply(
        build.registered("a1", cpu="8", mem=str(16 * GIB)),
        assign(build, "k1", slots("1.5", str(GIB))),
        assign(build, "k2", slots("2", str(2 * GIB), cuda_shares="0.25")),
    )
    row = agent(feed)
    assert row["occupied"] == {"cpu": "3.5", "mem": str(3 * GIB), "cuda.shares": "0.25"}
    assert row["kernel_count"] == 2
    assert set(row["allocations"]) == {"k1", "k2"}
    feed.apply(release(build, "k1"))
    row = agent(feed)
    assert row["occupied"] == {"cpu": "2", "mem": str(2 * GIB), "cuda.shares": "0.25"}
    assert (row["kernel_count"], row["version"], row["updated_at"]) == (1, 4, at(4))
    feed.apply(release(build, "k2"))
    assert (agent(feed)["occupied"], agent(feed)["kernel_count"]) == ({}, 0)


def test_capacity_changes_and_liveness(feed: Feeder, build: Builder) -> None:
    feed.apply(build.registered("a1", cpu="4", mem=str(GIB)))
    feed.apply(build(ag.AgentCapacityChanged, "a1", capacity=slots("8", str(2 * GIB))))
    assert agent(feed)["capacity"] == {"cpu": "8", "mem": str(2 * GIB)}
    feed.apply(build(ag.AgentLost, "a1", last_seen=1.5))
    assert (agent(feed)["status"], agent(feed)["version"]) == ("LOST", 3)
    feed.apply(build(ag.AgentRecovered, "a1"))
    assert (agent(feed)["status"], agent(feed)["updated_at"]) == ("ALIVE", at(4))


def test_termination_request_only_moves_the_version(feed: Feeder, build: Builder) -> None:
    feed.apply(build.registered("a1", cpu="4", mem=str(GIB)), assign(build, "k1", slots("1", "1")))
    before = agent(feed)
    feed.apply(build(ag.KernelTerminationRequested, "a1", kernel_id="k1", session_id="s-k1", reason=Reason.USER_REQUESTED))
    after = agent(feed)
    assert (after["version"], after["updated_at"]) == (3, at(3))
    assert (after["occupied"], after["kernel_count"]) == (before["occupied"], before["kernel_count"])


def test_assignment_to_unknown_agent_is_dead_lettered(feed: Feeder, build: Builder) -> None:
    result = feed.apply(assign(build, "k1", slots("1", "1"), agent_id="ghost"))
    assert result.rejected == 1 and "no agent ghost" in feed.rejected[0].error
    assert feed.rows("SELECT * FROM agents") == []
