"""The scheduler's snapshot and an event it could not apply: the event is not counted as known, so
the follow delivering it again (services.common.flow.Following) applies it rather than skipping it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from contracts import agent as ev
from contracts.envelope import Metadata
from domain.emitting import Context, Emitter
from services.scheduler.snapshot import Snapshot

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CTX = Context(now=NOW, metadata=Metadata(actor="test", correlation_id="c"))


def test_an_event_that_failed_is_applied_when_delivered_again() -> None:
    snapshot = Snapshot()
    registered = Emitter("a1", 0, CTX)(ev.AgentRegistered, capacity={"cpu": Decimal(4)}, backend="sim", hostname="h")
    assigned = Emitter("a1", 1, CTX)(ev.KernelAssigned, kernel_id="k1", session_id="s1", image="img",
                                     slots={"cpu": Decimal(1)})
    with pytest.raises(AttributeError):
        snapshot.apply(assigned)  # before its agent's registration: the agent is unknown
    snapshot.apply(registered)
    snapshot.apply(assigned)  # delivered again: applied, not skipped as already known
    agent = snapshot.agent("a1")
    assert agent is not None and list(agent.allocations) == ["k1"]
