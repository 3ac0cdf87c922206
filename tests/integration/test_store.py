"""The event store on PostgreSQL: msgspec bytes stored as published, atomic multi-aggregate saves,
optimistic concurrency."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from contracts import commands as c
from contracts.catalog import encode_event
from contracts.session import KernelPlacement, KernelSpec, SessionSpec
from domain import agent as agent_domain
from domain import session as session_domain
from services.application.context import make_context
from services.application.sessions import Sessions
from services.common.store import ConcurrencyError

SLOTS = {"cpu": Decimal(1), "mem": Decimal(1024**3)}


def _request(sessions: Sessions, session_id: str) -> int:
    command = c.RequestSession(owner="AK", spec=SessionSpec(
        name=session_id, image="py", kernels=[KernelSpec(kernel_id=f"{session_id}-k0", slots=SLOTS)],
    ))
    return sessions.request(session_id, command, make_context("test"))


def _stored(dsn: str) -> list[tuple[str, int, str, bytes]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT originator_id, originator_version, topic, state FROM berth_events ORDER BY notification_id")
        return [(r[0], r[1], r[2], bytes(r[3])) for r in rows]


def test_stores_the_canonical_msgspec_bytes_under_the_stable_type_name(apps, pg_dsn: str) -> None:  # type: ignore[no-untyped-def]
    sessions, _ = apps
    _request(sessions, "s1")
    (event,) = sessions.load("s1")
    assert _stored(pg_dsn) == [("s1", 1, "session.requested", encode_event(event))]


def test_a_stale_writer_gets_a_concurrency_error_and_writes_nothing(apps, pg_dsn: str) -> None:  # type: ignore[no-untyped-def]
    sessions, _ = apps
    _request(sessions, "s1")
    stale = sessions.get("s1")
    sessions.terminate("s1", make_context("first"))  # PENDING → CANCELLED, version 2
    late = session_domain.decide(stale, c.TerminateSession(), make_context("second"), "s1")
    with pytest.raises(ConcurrencyError):
        sessions.record(late)
    assert [row[1] for row in _stored(pg_dsn)] == [1, 2]


def test_a_save_across_aggregates_is_all_or_nothing(apps, pg_dsn: str) -> None:  # type: ignore[no-untyped-def]
    sessions, agents = apps
    ctx = make_context("test")
    agents.handle("a1", c.RegisterAgent(capacity={"cpu": "4", "mem": "8g"}, backend="sim", hostname="h"), ctx)
    _request(sessions, "s1")
    agent = agents.get("a1")
    scheduled = session_domain.decide(sessions.get("s1"), c.ScheduleSession(placements=[KernelPlacement(kernel_id="s1-k0", agent_id="a1")]), ctx, "s1")
    assigned = agent_domain.decide(agent, c.AssignKernel(kernel_id="s1-k0", session_id="s1", image="py", slots=SLOTS), ctx, "a1")
    # someone else changes the agent first: the whole placement must fail, the session stays PENDING
    agents.handle("a1", c.MarkAgentLost(last_seen=0.0), ctx)
    before = _stored(pg_dsn)
    with pytest.raises(ConcurrencyError):
        sessions.record(scheduled + assigned)
    assert _stored(pg_dsn) == before
    assert sessions.get("s1").status.value == "PENDING"
    # refreshed and re-decided, the same placement goes through, both aggregates in one save
    agents.handle("a1", c.MarkAgentRecovered(), ctx)
    retry = session_domain.decide(sessions.get("s1"), c.ScheduleSession(placements=[KernelPlacement(kernel_id="s1-k0", agent_id="a1")]), ctx, "s1")
    retry += agent_domain.decide(agents.get("a1"), c.AssignKernel(kernel_id="s1-k0", session_id="s1", image="py", slots=SLOTS), ctx, "a1")
    assert sessions.record(retry) == sessions.position()
    assert sessions.get("s1").status.value == "SCHEDULED"
    assert list(agents.get("a1").allocations) == ["s1-k0"]


def test_newer_than_returns_only_what_a_stale_view_missed_in_store_order(apps) -> None:  # type: ignore[no-untyped-def]
    sessions, _ = apps
    _request(sessions, "s1")
    _request(sessions, "s2")
    sessions.terminate("s1", make_context("t"))  # s1 version 2
    _request(sessions, "s3")

    missed = sessions.newer_than({"s1": 1, "s3": 0, "s2": 1})

    assert [(e.originator_id, e.originator_version) for e in missed] == [("s1", 2), ("s3", 1)]
    assert sessions.newer_than({}) == []
