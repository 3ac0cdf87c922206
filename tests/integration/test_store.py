"""The event store on PostgreSQL: msgspec bytes stored as published, atomic multi-aggregate saves,
optimistic concurrency."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

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


def test_a_save_stores_any_bytes_and_ids_exactly_and_returns_its_ids_in_order(apps, pg_dsn: str) -> None:  # type: ignore[no-untyped-def]
    """The save sends its events as arrays in binary: every byte of a state, and ids with the
    characters a text encoding escapes, arrive as they were; the notification ids come back one per
    event, in order."""
    sessions, _ = apps
    awkward = ['a"b', "c,d", "(e)", "f\\g", "h i", "NULL", "", "ü{}"]
    events = [StoredEvent(originator_id=f"{awkward[i % len(awkward)]}-{i}", originator_version=1,
                          topic="session.requested", state=bytes((i + j) % 256 for j in range(300)))
              for i in range(500)]
    ids = sessions.recorder.insert_events(events)
    assert ids == list(range(ids[0], ids[0] + len(events)))
    assert _stored(pg_dsn) == [(e.originator_id, 1, e.topic, e.state) for e in events]


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


def _generic_plan(dsn: str, statement: str, types: str) -> str:
    """The plan PostgreSQL keeps for ``statement`` once prepared and run a few times (psycopg prepares
    a statement at its fifth run; the server may then keep one generic plan for all parameters)."""
    numbered = statement
    for i in range(1, statement.count("%s") + 1):
        numbered = numbered.replace("%s", f"${i}", 1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE generic ({types}) AS {numbered}")
        rows = conn.execute("EXPLAIN EXECUTE generic (ARRAY['a'], ARRAY[1]::bigint[])").fetchall()
        return "\n".join(row[0] for row in rows)


def test_newer_than_reads_each_aggregates_range_even_in_a_generic_plan(apps, pg_dsn: str) -> None:  # type: ignore[no-untyped-def]
    """A long history of few aggregates (agents, quota scopes): the catch-up read of the gateway's
    every tenancy load hash-joined a scan of the whole table in its generic plan."""
    sessions, _ = apps
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO berth_events (originator_id, originator_version, topic, state)"
                     " SELECT 'agent-' || (i % 20), i, 'agent.kernel_assigned', '\\x00'::bytea"
                     " FROM generate_series(1, 50000) AS i")
        conn.execute("ANALYZE berth_events")
    with psycopg.connect(pg_dsn) as conn:
        statement = sessions.recorder._select_newer.as_string(conn)
    plan = _generic_plan(pg_dsn, statement, "text[], bigint[]")
    assert "Seq Scan on berth_events" not in plan, plan
    assert "berth_events_pkey" in plan, plan
