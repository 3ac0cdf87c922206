"""Tallied rows (``projections.tallies``): an agent's allocations and a quota scope's sum are read
once and written once per batch, and end as applying the events one by one leaves them."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from contracts import agent as ag
from contracts.envelope import Event
from contracts.quota import QuotaConsumed, QuotaReleased, QuotaScope, quota_id
from contracts.status import Reason
from projections.rebuild import dump_read_models, reset_read_models
from projections.writer import Writer
from tests.support.projections import Builder, Feeder, build, feed, read_models, slots  # noqa: F401

DOMAIN, PROJECT = quota_id(QuotaScope.DOMAIN, "d"), quota_id(QuotaScope.PROJECT, "ml")


def _history(build: Builder) -> list[Event]:
    """Two agents and two scopes, each changed many times, with other statements on the agents between."""
    events: list[Event] = [build.registered("a1", cpu="64", mem="1000"), build.registered("a2", cpu="64", mem="1000")]
    for i in range(6):
        agent = f"a{1 + i % 2}"
        events.append(build(ag.KernelAssigned, agent, kernel_id=f"k{i}", session_id=f"s{i}", image="py",
                            slots=slots("1", "10")))
        for qid, scope, name in ((DOMAIN, QuotaScope.DOMAIN, "d"), (PROJECT, QuotaScope.PROJECT, "ml")):
            events.append(build(QuotaConsumed, qid, scope=scope, name=name, allocations={f"s{i}": slots("1", "10")}))
    for i in (0, 3):
        agent = f"a{1 + i % 2}"
        events.append(build(ag.KernelTerminationRequested, agent, kernel_id=f"k{i}", session_id=f"s{i}",
                            reason=Reason.USER_REQUESTED))
        events.append(build(ag.KernelReleased, agent, kernel_id=f"k{i}", session_id=f"s{i}"))
        events.append(build(QuotaReleased, DOMAIN, scope=QuotaScope.DOMAIN, name="d", session_id=f"s{i}",
                            slots=slots("1", "10")))
    events.append(build(ag.KernelTerminationRequested, "a1", kernel_id="k2", session_id="s2",
                        reason=Reason.USER_REQUESTED))  # the agent's last change is not an allocation
    return events


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts the reads of tallied rows, per table."""
    counted: Counter[str] = Counter()
    fetchone = Writer.fetchone

    def counting(self: Writer, query: str, params: Any) -> Any:
        for table in ("agents", "quota_usage"):
            if f"FROM {table} " in query:
                counted[table] += 1
        return fetchone(self, query, params)

    monkeypatch.setattr(Writer, "fetchone", counting)
    return counted


def test_one_batch_gives_the_rows_of_one_event_per_batch(feed: Feeder, build: Builder) -> None:
    events = _history(build)
    feed.apply(*events)
    batched = dump_read_models(feed.conn)
    reset_read_models(feed.conn)
    one_by_one = Feeder(feed.conn)
    for event in events:
        one_by_one.apply(event)
    assert dump_read_models(feed.conn) == batched
    a1 = feed.row("SELECT kernel_count, occupied, version FROM agents WHERE agent_id = 'a1'")
    assert a1 == (2, {"cpu": "2", "mem": "20"}, 7)  # k2, k4 left; its last event a termination request
    assert feed.row("SELECT session_count, version FROM quota_usage WHERE quota_id = %s", DOMAIN) == (4, 8)


def test_a_batch_reads_each_tallied_row_once(feed: Feeder, build: Builder, reads: Counter[str]) -> None:
    feed.apply(*_history(build))
    assert reads == {"agents": 2, "quota_usage": 2}  # a1, a2; each scope (found missing, then created)


def test_a_refused_event_leaves_the_tallies_of_the_others(feed: Feeder, build: Builder) -> None:
    """The batch is then applied again with a savepoint per event: each change written at once."""
    events = _history(build)
    unknown = build(ag.KernelAssigned, "a9", kernel_id="k9", session_id="s9", image="py", slots=slots("1", "1"))
    result = feed.apply(*events[:5], unknown, *events[5:])
    assert result.rejected == 1 and "no agent a9" in feed.rejected[0].error
    with_refusal = dump_read_models(feed.conn)
    reset_read_models(feed.conn)
    Feeder(feed.conn).apply(*events)
    without = dump_read_models(feed.conn)
    assert with_refusal["agents"] == without["agents"]
    assert with_refusal["quota_usage"] == without["quota_usage"]
