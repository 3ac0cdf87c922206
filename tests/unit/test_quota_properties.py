"""Hypothesis properties of the Quota aggregate: any sequence of consumptions and releases
keeps usage non-negative and equal to what the holding sessions hold; a release repeated
changes nothing; replay agrees with evolving event by event."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import commands as c
from contracts.envelope import Event, Metadata
from contracts.quota import QuotaScope, quota_id
from domain import quota as q
from domain.emitting import Context
from domain.errors import AlreadyExistsError

QID = quota_id(QuotaScope.PROJECT, "ml")
CTX = Context(now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), metadata=Metadata(actor="t", correlation_id="c"),
              new_id=uuid.uuid4)
SESSIONS = [f"s{i}" for i in range(6)]

amounts = st.decimals(min_value=0, max_value=64, places=2, allow_nan=False, allow_infinity=False)
slot_maps = st.fixed_dictionaries({"cpu": amounts}, optional={"mem": st.integers(0, 2**34).map(Decimal)})
consume = st.builds(
    lambda allocations: c.ConsumeQuota(allocations=allocations),
    st.dictionaries(st.sampled_from(SESSIONS), slot_maps, min_size=1, max_size=3),
)
release = st.builds(lambda sid: c.ReleaseQuota(session_id=sid), st.sampled_from(SESSIONS))
commands = st.lists(st.one_of(consume, release), max_size=40)


def apply_all(cmds: list[c.Command]) -> tuple[q.QuotaState | None, list[Event], dict[str, dict[str, Decimal]]]:
    """Applies each command (skipping refused ones); returns the state, the history and a model
    of what each session should hold."""
    state: q.QuotaState | None = None
    history: list[Event] = []
    model: dict[str, dict[str, Decimal]] = {}
    for command in cmds:
        try:
            events = q.decide(state, command, CTX, QID)
        except AlreadyExistsError:
            assert isinstance(command, c.ConsumeQuota) and set(command.allocations) & set(model)
            continue
        if isinstance(command, c.ConsumeQuota):
            model.update(command.allocations)
        elif command.session_id in model:
            del model[command.session_id]
        else:
            assert events == [], "a release of a session that does not hold records nothing"
        for event in events:
            state = q.evolve(state, event)
        history += events
        if state is not None:
            assert all(amount >= 0 for amount in state.used.values()), state.used
    return state, history, model


@settings(max_examples=200, deadline=None)
@given(commands)
def test_usage_is_never_negative_and_matches_the_holding_sessions(cmds: list[c.Command]) -> None:
    state, history, model = apply_all(cmds)
    if state is None:
        assert model == {} and history == []
        return
    assert state.holding == model
    assert state.sessions == len(model)
    for slot in ("cpu", "mem"):
        assert state.used.get(slot, Decimal(0)) == sum((s.get(slot, Decimal(0)) for s in model.values()), Decimal(0))
    assert [e.originator_version for e in history] == list(range(1, len(history) + 1))


@settings(max_examples=200, deadline=None)
@given(commands, st.sampled_from(SESSIONS))
def test_releasing_twice_equals_releasing_once(cmds: list[c.Command], session_id: str) -> None:
    state, _, _ = apply_all(cmds)
    once, _, _ = apply_all([*cmds, c.ReleaseQuota(session_id=session_id)])
    twice, _, _ = apply_all([*cmds, c.ReleaseQuota(session_id=session_id), c.ReleaseQuota(session_id=session_id)])
    assert once == twice
    if once is not None:
        assert session_id not in once.holding
    if state is not None and session_id not in state.holding:
        assert once == state


@settings(max_examples=200, deadline=None)
@given(commands)
def test_replay_agrees_with_evolve(cmds: list[c.Command]) -> None:
    state, history, _ = apply_all(cmds)
    assert q.replay(history) == state
