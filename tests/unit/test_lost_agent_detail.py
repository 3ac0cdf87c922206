"""The status detail of a live session whose agent is lost (pure: rows and times given)."""

from __future__ import annotations

import datetime as dt

import pytest

from projections.queries.rows import SessionRow
from services.gateway.sessions.lost_agents import agents_to_check, lost_agent_detail

T = dt.datetime(2026, 12, 6, 15, 50, 1, tzinfo=dt.UTC)


def row(status: str = "RUNNING", agents: tuple[str, ...] = ("a1",), session_id: str = "s1") -> SessionRow:
    return SessionRow(session_id=session_id, name=session_id, owner="ak", image="img", session_type="interactive",
                      status=status, status_reason=None, status_detail=None, requested_slots={}, cluster_size=1,
                      agent_ids=list(agents), status_history={}, created_at=T, updated_at=T, terminated_at=None,
                      version=1, last_position=1, user_name="u", domain="default", project="default",
                      resource_group="default", priority=10, pending_code=None, pending_reason=None)


def test_a_running_session_on_a_lost_agent_says_when_it_ends_unless_the_agent_returns() -> None:
    detail = lost_agent_detail(row(), {"a1": T}, 60.0)
    assert detail == ("agent a1 lost at 2026-12-06 15:50:01 UTC (no heartbeat): nothing runs in the session"
                      " meanwhile, and it ends at 2026-12-06 15:51:01 UTC unless it comes back")


def test_several_lost_agents_are_named_and_the_first_loss_counts() -> None:
    detail = lost_agent_detail(row(agents=("a2", "a1", "a3")), {"a1": T + dt.timedelta(seconds=5), "a2": T}, 10.0)
    assert detail is not None and detail.startswith("agents a1, a2 lost at 2026-12-06 15:50:01 UTC")
    assert "ends at 2026-12-06 15:50:11 UTC unless they come back" in detail


@pytest.mark.parametrize("session", [
    row(agents=("a2",)),  # its agent is alive
    row(status="PENDING", agents=()),
    row(status="TERMINATED"),  # ended: its own detail stands
    row(status="ERROR"),
])
def test_nothing_is_said_of_a_session_whose_agents_are_not_lost_or_that_ended(session: SessionRow) -> None:
    assert lost_agent_detail(session, {"a1": T}, 60.0) is None


def test_only_the_agents_of_sessions_placed_and_not_ended_are_looked_up() -> None:
    rows = [row(agents=("b", "a")), row("TERMINATED", ("c",)), row("PENDING", ()), row("CREATING", ("a", "d"))]
    assert agents_to_check(rows) == ["a", "b", "d"]
