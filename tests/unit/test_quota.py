"""Table tests of the Quota aggregate: decide and evolve, no I/O."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from decimal import Decimal

import pytest

from contracts import commands as c
from contracts.envelope import Event, Metadata
from contracts.quota import QuotaConsumed, QuotaReleased, QuotaScope, quota_id
from contracts.session import SessionStatusChanged
from contracts.status import Reason, SessionStatus
from domain import quota as q
from domain.emitting import Context
from domain.errors import AlreadyExistsError, InvalidRequestError

QID = quota_id(QuotaScope.KEYPAIR, "AKIA_ALICE")
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def ctx() -> Context:
    counter = itertools.count(1)
    return Context(now=NOW, metadata=Metadata(actor="test", correlation_id="c"), new_id=lambda: uuid.UUID(int=next(counter)))


def slots(cpu: str, mem: str = "1024") -> dict[str, Decimal]:
    return {"cpu": Decimal(cpu), "mem": Decimal(mem)}


def run(state: q.QuotaState | None, command: c.Command) -> tuple[q.QuotaState | None, list[Event]]:
    events = q.decide(state, command, ctx(), QID)
    for event in events:
        state = q.evolve(state, event)
    return state, events


def test_consume_records_every_allocation_in_the_scope() -> None:
    state, events = run(None, c.ConsumeQuota(allocations={"s1": slots("1"), "s2": slots("2", "2048")}))
    (event,) = events
    assert isinstance(event, QuotaConsumed)
    assert (event.scope, event.name, event.originator_id, event.originator_version) == (
        QuotaScope.KEYPAIR, "AKIA_ALICE", QID, 1)
    assert state is not None and state.sessions == 2
    assert state.used == {"cpu": Decimal(3), "mem": Decimal(3072)}


def test_release_frees_exactly_what_the_session_held() -> None:
    state, _ = run(None, c.ConsumeQuota(allocations={"s1": slots("1"), "s2": slots("2")}))
    state, events = run(state, c.ReleaseQuota(session_id="s1"))
    (event,) = events
    assert isinstance(event, QuotaReleased)
    assert (event.session_id, event.slots, event.originator_version) == ("s1", slots("1"), 2)
    assert state is not None and state.used == slots("2") and state.sessions == 1


def test_release_is_a_no_op_when_the_session_does_not_hold() -> None:
    assert run(None, c.ReleaseQuota(session_id="s1")) == (None, [])
    state, _ = run(None, c.ConsumeQuota(allocations={"s1": slots("1")}))
    state, _ = run(state, c.ReleaseQuota(session_id="s1"))
    again, events = run(state, c.ReleaseQuota(session_id="s1"))
    assert events == [] and again == state
    assert state is not None and state.used == {} and state.sessions == 0


def test_a_session_already_holding_is_refused_and_nothing_recorded() -> None:
    state, _ = run(None, c.ConsumeQuota(allocations={"s1": slots("1")}))
    with pytest.raises(AlreadyExistsError, match="session s1 already holds quota in keypair AKIA_ALICE"):
        q.decide(state, c.ConsumeQuota(allocations={"s2": slots("1"), "s1": slots("1")}), ctx(), QID)


def test_a_released_session_may_consume_again() -> None:
    state, _ = run(None, c.ConsumeQuota(allocations={"s1": slots("1")}))
    state, _ = run(state, c.ReleaseQuota(session_id="s1"))
    state, events = run(state, c.ConsumeQuota(allocations={"s1": slots("3")}))
    assert len(events) == 1 and state is not None and state.used == slots("3")


@pytest.mark.parametrize(
    ("allocations", "message"),
    [
        ({}, "no allocations"),
        ({"s 1": {"cpu": Decimal(1)}}, "invalid session id"),
        ({"s1": {"gpu": Decimal(1)}}, "unknown resource slot"),
        ({"s1": {"cpu": Decimal(-1)}}, "non-negative"),
        ({"s1": {"cpu": Decimal("NaN")}}, "non-negative"),
    ],
)
def test_invalid_consumptions_are_refused(allocations: dict, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        q.decide(None, c.ConsumeQuota(allocations=allocations), ctx(), QID)


@pytest.mark.parametrize("bad", ["keypair_x", "quota_user_x", "quota_keypair_", "quota_keypair"])
def test_a_malformed_quota_id_is_refused(bad: str) -> None:
    with pytest.raises(InvalidRequestError, match="not a quota id"):
        q.decide(None, c.ConsumeQuota(allocations={"s1": slots("1")}), ctx(), bad)


def test_parse_quota_id_round_trips_names_with_underscores() -> None:
    for scope in QuotaScope:
        assert q.parse_quota_id(quota_id(scope, "my_team_1")) == (scope, "my_team_1")


def test_quota_scopes_are_keypair_project_domain() -> None:
    assert q.quota_scopes("AK1", "ml", "research") == [
        (QuotaScope.KEYPAIR, "AK1"), (QuotaScope.PROJECT, "ml"), (QuotaScope.DOMAIN, "research")]


def test_replay_equals_evolving_event_by_event() -> None:
    state, history = None, []
    for command in (
        c.ConsumeQuota(allocations={"s1": slots("1"), "s2": slots("2")}),
        c.ReleaseQuota(session_id="s2"),
        c.ConsumeQuota(allocations={"s3": slots("4")}),
        c.ReleaseQuota(session_id="s1"),
    ):
        state, events = run(state, command)
        history += events
    assert q.replay(history) == state
    assert q.replay([]) is None


def test_replay_of_a_long_history_is_linear(monkeypatch: pytest.MonkeyPatch) -> None:
    """10 000 consume/release pairs replay in one pass over one holding, never event by event through ``evolve``
    (which copies the holding each time: quadratic). Counted, not timed: it was "within a second", which a busy
    machine missed."""

    def copying(*_: object) -> None:
        raise AssertionError("replay went through evolve, which copies the holding per event")

    monkeypatch.setattr(q, "evolve", copying)
    history: list[Event] = []
    meta = Metadata(actor="t", correlation_id="c")
    version = 0
    for i in range(10_000):
        for event_cls, fields in (
            (QuotaConsumed, {"allocations": {f"s{i}": slots("1")}}),
            (QuotaReleased, {"session_id": f"s{i // 2}", "slots": slots("1")}),
        ):
            version += 1
            history.append(event_cls(event_id=uuid.uuid4(), originator_id=QID, originator_version=version,
                                     timestamp=NOW, metadata=meta, scope=QuotaScope.KEYPAIR, name="AKIA_ALICE", **fields))
    state = q.replay(history)
    assert state is not None and state.version == 20_000 and state.sessions == 5_000


def test_a_foreign_event_cannot_be_applied() -> None:
    foreign = SessionStatusChanged(event_id=uuid.uuid4(), originator_id="s1", originator_version=1, timestamp=NOW,
                                   metadata=Metadata(actor="t", correlation_id="c"), status=SessionStatus.RUNNING,
                                   reason=Reason.ALL_KERNELS_RUNNING)
    with pytest.raises(TypeError):
        q.evolve(None, foreign)
    with pytest.raises(TypeError):
        q.replay([foreign])


def test_release_holder_needs_no_history_and_matches_a_decided_release() -> None:
    state, _ = run(None, c.ConsumeQuota(allocations={"s1": slots("2"), "s2": slots("1")}))
    assert state is not None
    (decided,) = q.decide(state, c.ReleaseQuota(session_id="s1"), ctx(), QID)
    (direct,) = q.release_holder(QID, state.version, "s1", slots("2"), ctx())
    assert (direct.originator_version, direct.session_id, direct.slots, direct.scope, direct.name) == (
        decided.originator_version, decided.session_id, decided.slots, decided.scope, decided.name)
    assert q.evolve(state, direct).holding == {"s2": slots("1")}
    assert q.release_holder(QID, 0, "s1", slots("2"), ctx()) == [], "nothing was ever consumed"


def test_a_sessions_total_beyond_what_one_amount_may_be_is_consumed() -> None:
    """A total sums its kernels: 64 kernels of the largest count one may ask for (10^9) sum to 64 x 10^9. Held to
    the bounds of one amount as input, the consumption was refused, in the middle of every scheduling pass."""
    total = {"cpu": Decimal(64 * 10**9) + Decimal("0.5"), "mem": Decimal(64 * (2**63 - 1))}
    state, events = run(None, c.ConsumeQuota(allocations={"s1": total}))
    assert state is not None and state.holding["s1"] == total and len(events) == 1
