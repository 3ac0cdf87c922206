"""Where a dead letter goes: an agent's report to its sender's own share of the consumer's letters, the sender taken
from the report's subject (the only thing the server checked); anything else to the consumer's subject."""

from __future__ import annotations

import pytest

from contracts.subjects import (
    SubjectError, dead_letter_consumer, dead_letter_filters, dead_letter_subject, dead_letter_subject_of,
)


@pytest.mark.parametrize(("consumer", "subject", "expected"), [
    ("controller", "rp.agent.a1.kernel_running", "dlq.controller.a1"),
    ("controller-storage", "rp.storage.v1.purged", "dlq.controller-storage"),
    ("projector", "ev.agent.a1.kernel_assigned", "dlq.projector"),
    ("agent-a1", "ev.agent.a1.kernel_assigned", "dlq.agent-a1"),
    ("controller", "rp.agent.a.b.kernel_running", "dlq.controller"),
    ("controller", "", "dlq.controller"),
])
def test_an_agents_report_goes_to_its_senders_share(consumer: str, subject: str, expected: str) -> None:
    assert dead_letter_subject_of(consumer, subject) == expected


def test_every_letter_of_a_consumer_is_under_its_filters() -> None:
    assert dead_letter_filters("controller") == ("dlq.controller", "dlq.controller.>")
    assert dead_letter_filters() == ("dlq.>",)
    assert [dead_letter_consumer(s) for s in ("dlq.controller", "dlq.controller.a1", "ev.a.b.c", "dlq.a.b.c")] == [
        "controller", "controller", "", ""]
    with pytest.raises(SubjectError):
        dead_letter_subject("controller", "a.b")
