"""The Quota aggregate: what one scope (keypair, project or domain) holds, session by session.

One aggregate per scope (id ``quota_<scope>_<name>``). ``ConsumeQuota`` records the
sessions a scheduling pass placed; ``ReleaseQuota`` frees one session's slots and is a
no-op when the session holds nothing, so a release can be retried or repeated safely
and usage never goes negative.

``replay`` folds a history into one mutable mapping and freezes it at the end, so a
long history replays in linear time; ``evolve`` (one event) copies the mapping.
"""

from __future__ import annotations

from decimal import Decimal
from functools import singledispatch

import msgspec

from contracts import commands as c
from contracts.envelope import Event
from contracts.quota import QuotaConsumed, QuotaReleased, QuotaScope, quota_id
from contracts.slots import SlotError, sum_slots, summed_slots
from contracts.subjects import SubjectError, check_token
from domain.emitting import Context, Emitter
from domain.errors import AlreadyExistsError, InvalidRequestError

__all__ = ["QuotaState", "decide", "evolve", "parse_quota_id", "quota_scopes", "release_holder", "replay"]

Slots = dict[str, Decimal]


class QuotaState(msgspec.Struct, frozen=True, kw_only=True):
    """Usage of one quota scope: the slots each session holds."""

    id: str
    version: int
    scope: QuotaScope
    name: str
    holding: dict[str, Slots] = {}
    """session id -> slots."""

    @property
    def used(self) -> Slots:
        """Returns the slot-wise sum of what the sessions hold ({} when none)."""
        return sum_slots(self.holding.values())

    @property
    def sessions(self) -> int:
        """Returns the number of sessions holding slots."""
        return len(self.holding)


def quota_scopes(owner: str, project: str, domain: str) -> list[tuple[QuotaScope, str]]:
    """Returns the quota scopes a session of ``owner`` (access key) in ``project`` and
    ``domain`` counts against: keypair, project and domain, in that order."""
    return [(QuotaScope.KEYPAIR, owner), (QuotaScope.PROJECT, project), (QuotaScope.DOMAIN, domain)]


def parse_quota_id(aggregate_id: str) -> tuple[QuotaScope, str]:
    """Returns the scope and name of a quota aggregate id (``quota_keypair_AKIA…``);
    raises ``InvalidRequestError`` when it is not one."""
    prefix, _, rest = aggregate_id.partition("_")
    scope, _, name = rest.partition("_")
    try:
        parsed = QuotaScope(scope)
    except ValueError:
        parsed = None
    if prefix != "quota" or parsed is None or not name or quota_id(parsed, name) != aggregate_id:
        raise InvalidRequestError(f"not a quota id: {aggregate_id!r} (expected quota_<keypair|project|domain>_<name>)")
    return parsed, name


# ---------------------------------------------------------------- evolve


@singledispatch
def _change(event: Event, holding: dict[str, Slots]) -> None:
    raise TypeError(f"Quota cannot apply {type(event).__name__}")


@_change.register
def _(event: QuotaConsumed, holding: dict[str, Slots]) -> None:
    holding.update((session_id, dict(slots)) for session_id, slots in event.allocations.items())


@_change.register
def _(event: QuotaReleased, holding: dict[str, Slots]) -> None:
    holding.pop(event.session_id, None)


def _scope_of(event: Event) -> tuple[QuotaScope, str]:
    if not isinstance(event, (QuotaConsumed, QuotaReleased)):
        raise TypeError(f"Quota cannot apply {type(event).__name__}")
    return event.scope, event.name


def evolve(state: QuotaState | None, event: Event) -> QuotaState:
    """Returns the state after ``event``."""
    if state is None:
        scope, name = _scope_of(event)
        holding: dict[str, Slots] = {}
        _change(event, holding)
        return QuotaState(id=event.originator_id, version=event.originator_version, scope=scope, name=name, holding=holding)
    holding = dict(state.holding)
    _change(event, holding)
    return msgspec.structs.replace(state, version=event.originator_version, holding=holding)


def replay(events: list[Event]) -> QuotaState | None:
    """Returns the state after all ``events`` (None when there are none), in linear time."""
    if not events:
        return None
    scope, name = _scope_of(events[0])
    holding: dict[str, Slots] = {}
    for event in events:
        _change(event, holding)
    last = events[-1]
    return QuotaState(id=last.originator_id, version=last.originator_version, scope=scope, name=name, holding=holding)


# ---------------------------------------------------------------- decide


def decide(state: QuotaState | None, command: c.Command, ctx: Context, aggregate_id: str) -> list[Event]:
    """Returns the events that ``command`` causes on quota ``aggregate_id``; raises a
    ``DomainError`` when refused."""
    return _decide(command, state, ctx, aggregate_id)


@singledispatch
def _decide(command: c.Command, state: QuotaState | None, ctx: Context, aggregate_id: str) -> list[Event]:
    raise TypeError(f"Quota cannot handle {type(command).__name__}")


@_decide.register
def _(command: c.ConsumeQuota, state: QuotaState | None, ctx: Context, aggregate_id: str) -> list[Event]:
    scope, name = parse_quota_id(aggregate_id)
    if not command.allocations:
        raise InvalidRequestError(f"nothing to consume in quota {scope.value} {name}: no allocations")
    try:
        allocations = {check_token(sid, "session id"): summed_slots(slots)
                       for sid, slots in command.allocations.items()}
    except (SubjectError, SlotError) as exc:
        raise InvalidRequestError(str(exc)) from exc
    holding = state.holding if state is not None else {}
    already = sorted(set(allocations) & set(holding))
    if already:
        raise AlreadyExistsError(
            f"session {', '.join(already)} already holds quota in {scope.value} {name}; release it first"
        )
    version = state.version if state is not None else 0
    return [Emitter(aggregate_id, version, ctx)(QuotaConsumed, scope=scope, name=name, allocations=allocations)]


@_decide.register
def _(command: c.ReleaseQuota, state: QuotaState | None, ctx: Context, aggregate_id: str) -> list[Event]:
    if state is None or command.session_id not in state.holding:
        return []
    return [
        Emitter(aggregate_id, state.version, ctx)(
            QuotaReleased,
            scope=state.scope,
            name=state.name,
            session_id=command.session_id,
            slots=dict(state.holding[command.session_id]),
        )
    ]


def release_holder(aggregate_id: str, version: int, session_id: str, slots: Slots, ctx: Context) -> list[Event]:
    """Returns the ``QuotaReleased`` of a session known to hold quota, numbered after ``version``
    (the aggregate's current version), without replaying its history.

    For the caller that ends a scheduled session: ``QuotaConsumed`` was recorded with the
    session's ``SessionScheduled`` and its terminal transition happens once, so the session
    holds exactly ``slots`` here. The aggregate of a busy domain holds a long history; loading
    it at every release would make each release slower than the last.
    """
    scope, name = parse_quota_id(aggregate_id)
    if version < 1:
        return []  # nothing was ever consumed in this scope
    return [
        Emitter(aggregate_id, version, ctx)(QuotaReleased, scope=scope, name=name, session_id=session_id, slots=dict(slots))
    ]
