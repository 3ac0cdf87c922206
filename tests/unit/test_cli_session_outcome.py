"""``outcome``: the line ``berth run`` prints for a session that did not start: why it still waits, or
why it ended."""

from __future__ import annotations

from services.cli.sessions_common import outcome

NO_AGENT = "no agent in resource group 'default' has 1 cpu, 1 GiB mem free"


def test_a_session_still_pending_says_why_it_waits() -> None:
    assert outcome({"status": "PENDING", "statusReason": None, "pendingReason": NO_AGENT}) == f"PENDING: {NO_AGENT}"


def test_a_session_that_ended_says_its_reason_and_detail() -> None:
    assert outcome({"status": "ERROR", "statusReason": "failed-to-start", "statusDetail": "no such image",
                    "pendingReason": None}) == "ERROR (failed-to-start): no such image"
    assert outcome({"status": "PENDING"}) == "PENDING (no reason given)"
