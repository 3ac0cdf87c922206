"""A quota scope's aggregate after 10,000 sessions: a cold load (a process that just started) reads
at most ``snapshots.EVERY`` events, as an agent's does (``test_event_store_contract.py``).

The history is what the platform records for one busy domain: per scheduling pass one
``QuotaConsumed`` listing the pass's sessions (``domain.quota.decide``, as the scheduler), and per
session one ``QuotaReleased`` when it ends (``release_holder``, as ``Sessions`` does).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from contracts import commands as c
from contracts.envelope import Event, Metadata
from contracts.quota import QuotaScope, quota_id
from domain import quota as quota_domain
from domain.emitting import Context
from services.application.scheduling import Scheduling
from services.common import snapshots
from tests.support.read_counting import CountsReads

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SLOTS = {"cpu": Decimal(1), "mem": Decimal(2**30)}
SCOPE = quota_id(QuotaScope.DOMAIN, "default")
PER_PASS = 10


class CountingScheduling(CountsReads, Scheduling):
    """The scheduler's application, counting what ``current`` reads from the store."""


def _ctx() -> Context:
    return Context(now=NOW, metadata=Metadata(actor="quota-test", correlation_id="corr"))


def quota_history(sessions: int, first: int = 0, state: quota_domain.QuotaState | None = None) -> list[Event]:
    """The quota events of ``sessions`` sessions placed ``PER_PASS`` per pass, each pass's sessions
    released before the next pass (after ``state``)."""
    events: list[Event] = []
    for start in range(first, first + sessions, PER_PASS):
        ids = [f"s{i}" for i in range(start, min(start + PER_PASS, first + sessions))]
        consumed = quota_domain.decide(state, c.ConsumeQuota(allocations={i: SLOTS for i in ids}), _ctx(), SCOPE)
        for event in consumed:
            state = quota_domain.evolve(state, event)
        events += consumed
        for session_id in ids:
            assert state is not None
            released = quota_domain.release_holder(SCOPE, state.version, session_id, SLOTS, _ctx())
            state = quota_domain.evolve(state, released[0])
            events += released
    return events


def _cold_reads(dsn: str) -> int:
    """Loads the scope in a fresh application; returns the events it read (checking the state)."""
    fresh = CountingScheduling(dsn)
    try:
        cold = fresh.current(SCOPE, quota_domain.evolve)
        assert cold == quota_domain.replay(fresh.load(SCOPE))
        return sum(n for _, _, n in fresh.reads)
    finally:
        fresh.close()


def test_a_cold_load_of_a_quota_scope_reads_a_bounded_number_of_events_after_ten_thousand_sessions(pg_dsn: str) -> None:
    history = quota_history(10_000)
    assert len(history) == 11_000
    warm = CountingScheduling(pg_dsn)
    try:
        for start in range(0, len(history), 1000):
            warm.record(history[start:start + 1000])
        state = warm.current(SCOPE, quota_domain.evolve)  # the first load ever reads it all, once
        assert state is not None and state.version == 11_000 and state.sessions == 0
        assert _cold_reads(pg_dsn) <= snapshots.EVERY
        # It keeps holding as the scope grows: the warm application snapshots as it passes each step.
        for start in range(10_000, 10_000 + 2 * snapshots.EVERY, PER_PASS):
            more = quota_history(PER_PASS, start, state)
            warm.record(more)
            state = warm.current(SCOPE, quota_domain.evolve)
        assert _cold_reads(pg_dsn) <= snapshots.EVERY
    finally:
        warm.close()
