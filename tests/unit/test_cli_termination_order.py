"""``berth rm``'s order: sessions the read models do not show, then pending ones, then the rest,
each group in the order given, so that no running session frees room for a pending one of the
same command before it is cancelled."""

from __future__ import annotations

from services.cli.session_cmd import termination_order


def test_pending_sessions_are_cancelled_before_running_ones_free_their_room() -> None:
    statuses = {"r1": "RUNNING", "p1": "PENDING", "t1": "TERMINATING", "p2": "PENDING", "new": None, "r2": "RUNNING"}
    assert termination_order(statuses) == ["new", "p1", "p2", "r1", "t1", "r2"]


def test_the_order_given_is_kept_without_pending_sessions() -> None:
    assert termination_order({"b": "RUNNING", "a": "PREPARING"}) == ["b", "a"]
