"""The soak's convergence of one session: RUNNING once then ended by the user, or ended because its agent
was lost (the fault suite's `agent lost for good`, issue 13 item 5e)."""

from __future__ import annotations

import pytest

from ops.bench.soak_report import ended_by_agent_loss, settled

RAN = {"PENDING": "t0", "RUNNING": "t1", "TERMINATED": "t2"}


@pytest.mark.parametrize(("row", "ok", "lost"), [
    ({"status": "TERMINATED", "statusReason": "user-requested", "statusHistory": RAN}, True, False),
    ({"status": "CANCELLED", "statusReason": "user-requested", "statusHistory": {"PENDING": "t0"}}, False, False),
    ({"status": "TERMINATED", "statusReason": "agent-lost", "statusHistory": RAN}, True, True),
    ({"status": "TERMINATED", "statusReason": "agent-lost", "statusHistory": {"PREPARING": "t0"}}, True, True),
    ({"status": "ERROR", "statusReason": "agent-lost", "statusHistory": {"PREPARING": "t0"}}, True, True),
    ({"status": "ERROR", "statusReason": "failed-to-start", "statusHistory": RAN}, False, False),
    ({"status": "RUNNING", "statusReason": "agent-lost", "statusHistory": RAN}, False, False),
    ({"status": "TERMINATING", "statusReason": "agent-lost", "statusHistory": RAN}, False, False),
])
def test_a_session_converges_when_it_ran_and_ended_or_its_agent_was_lost(row: dict, ok: bool, lost: bool) -> None:
    assert settled(row) is ok
    assert ended_by_agent_loss(row) is lost
