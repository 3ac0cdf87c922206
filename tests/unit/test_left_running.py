"""The line `berth up` says at its stop about the sessions it leaves (pure: no database)."""

from __future__ import annotations

import pytest

from services.supervisor.left_running import describe_left


@pytest.mark.parametrize("counts", [None, {}, {"RUNNING": 0}])
def test_nothing_is_said_when_no_session_is_left(counts: dict[str, int] | None) -> None:
    assert describe_left(counts, "docker") is None


def test_docker_sessions_go_on_in_their_containers() -> None:
    line = describe_left({"RUNNING": 2, "PENDING": 1}, "docker")
    assert line == ("3 sessions not ended (2 RUNNING, 1 PENDING): their containers go on running, and the next"
                    " `berth up` resumes them; to end them, `berth rm` before stopping")


def test_one_process_session_ends_with_its_runner() -> None:
    line = describe_left({"RUNNING": 1}, "process")
    assert line == ("1 session not ended (1 RUNNING): its runner ends with Berth, and the next `berth up` ends it"
                    " (vanished); to end it, `berth rm` before stopping")


def test_statuses_of_equal_counts_are_in_name_order_and_simulated_ones_resume() -> None:
    line = describe_left({"SCHEDULED": 1, "PENDING": 1}, "simulated")
    assert line == ("2 sessions not ended (1 PENDING, 1 SCHEDULED): the next `berth up` resumes them; to end them,"
                    " `berth rm` before stopping")
