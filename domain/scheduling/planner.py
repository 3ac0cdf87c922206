"""``plan``: one scheduling pass over the pending sessions, pure and deterministic.

Per resource group (in name order), with the group's options (defaults when absent):

1. sessions pending for ``pending_timeout`` seconds or more are expired;
2. the others are sequenced (priority, then FIFO, LIFO or DRF, see ``sequencing``);
3. each runs the validators (``filters``); the first refusal is its reason;
4. once a session of the group found no agent (``no-agent``), every later one that
   passes the validators waits with ``head-of-line`` (Backend.AI's rule: a big session
   is not overtaken forever by small ones);
5. otherwise agents are selected (``selection``) and the placement is charged to the
   agents and to the quota ledger at once, so later sessions see it.

The same inputs give the same plan whatever the order of ``pending`` or of the
view's dicts: groups, agents and sessions are all visited in sorted orders.
"""

from __future__ import annotations

import datetime as dt
from itertools import chain
from typing import Iterable, Iterator, Mapping, Sequence

from contracts.tenancy import ResourceGroupOptions, SelectionStrategy
from domain.scheduling import reasons
from domain.scheduling.demand import Demand, demand_of, floor_of
from domain.scheduling.filters import Context, first_reason
from domain.scheduling.fixedpoint import SlotScale
from domain.scheduling.model import ClusterView, PendingReason, PendingSession, Plan, SessionPlacement
from domain.scheduling.pool import AgentPool
from domain.scheduling.quota import QuotaLedger
from domain.scheduling.selection import select
from domain.scheduling.sequencing import drf_weights, sequence

__all__ = ["plan"]


def plan(view: ClusterView, pending: Sequence[PendingSession], now: dt.datetime) -> Plan:
    """Returns the placements, pending reasons, expirations and next wake-up of one pass.

    Raises ``ValueError`` for malformed input (a session id given twice, a session
    without kernels, a negative or non-finite slot amount); nothing is decided then.
    """
    by_group = _by_group(pending)
    scale = SlotScale.covering(_every_slot_map(view, pending))
    ledger = QuotaLedger(view, scale)
    placements: list[SessionPlacement] = []
    waiting: dict[str, PendingReason] = {}
    expired: list[str] = []
    cursors = dict(sorted(view.round_robin.items()))
    for group in sorted(by_group):
        options = _options(view, group)
        live, late = _split_expired(by_group[group], options, now)
        expired += [s.session_id for s in sorted(late, key=lambda s: (s.requested_at, s.session_id))]
        demands = {s.session_id: demand_of(s, scale) for s in live}
        agents = sorted(
            (a for a in view.agents.values() if a.alive and a.resource_group == group),
            key=lambda a: a.agent_id,
        )
        pool = AgentPool(
            agents, scale, options.agent_selection, view.round_robin.get(group, 0),
            floor_of(demands.values(), scale.size),
        )
        ctx = Context(group=group, options=options, now=now, finished=view.finished, ledger=ledger)
        for demand, outcome in _decide(demands, pool, ctx, scale):
            if isinstance(outcome, PendingReason):
                waiting[demand.session.session_id] = outcome
            else:
                placements.append(SessionPlacement(session_id=demand.session.session_id, kernels=outcome))
        if options.agent_selection is SelectionStrategy.ROUNDROBIN and len(pool):
            cursors[group] = pool.cursor
    return Plan(
        placements=placements,
        pending=waiting,
        expired=expired,
        wake_at=_wake_at(pending, waiting, view, now),
        round_robin=cursors,
    )


def _decide(
    demands: Mapping[str, Demand], pool: AgentPool, ctx: Context, scale: SlotScale
) -> Iterator[tuple[Demand, tuple[tuple[str, str], ...] | PendingReason]]:
    weights = drf_weights(pool.totals())
    ledger = ctx.ledger
    blocked = False
    sessions = [d.session for d in demands.values()]
    for session in sequence(sessions, ctx.options.scheduler, lambda owner: ledger.dominant_share(owner, weights)):
        demand = demands[session.session_id]
        reason = first_reason(demand, ctx)
        if reason is None and blocked:
            reason = reasons.head_of_line(ctx.group)
        if reason is not None:
            yield demand, reason
            continue
        outcome = select(demand, pool, ctx.group, scale)
        if isinstance(outcome, PendingReason):
            blocked = blocked or outcome.code == reasons.NO_AGENT
        else:
            ledger.charge(session, demand.total)
        yield demand, outcome


def _by_group(pending: Sequence[PendingSession]) -> dict[str, list[PendingSession]]:
    groups: dict[str, list[PendingSession]] = {}
    seen: set[str] = set()
    for session in pending:
        if session.session_id in seen:
            raise ValueError(f"session {session.session_id!r} is pending twice in one pass")
        seen.add(session.session_id)
        groups.setdefault(session.resource_group, []).append(session)
    return groups


def _every_slot_map(view: ClusterView, pending: Sequence[PendingSession]) -> Iterable[Mapping]:
    return chain(
        (a.capacity for a in view.agents.values()),
        (a.occupied for a in view.agents.values()),
        (k.slots for s in pending for k in s.kernels),
        (limits.total_resource_slots for limits in view.keypair_limits.values()),
        view.project_limits.values(),
        view.domain_limits.values(),
        (usage.slots for usage in view.usage.values()),
    )


def _options(view: ClusterView, group: str) -> ResourceGroupOptions:
    options = view.groups.get(group)
    return ResourceGroupOptions() if options is None else options


def _timeout(options: ResourceGroupOptions) -> dt.timedelta | None:
    return dt.timedelta(seconds=options.pending_timeout) if options.pending_timeout > 0 else None


def _split_expired(
    sessions: list[PendingSession], options: ResourceGroupOptions, now: dt.datetime
) -> tuple[list[PendingSession], list[PendingSession]]:
    timeout = _timeout(options)
    if timeout is None:
        return sessions, []
    live = [s for s in sessions if now - s.requested_at < timeout]
    late = [s for s in sessions if now - s.requested_at >= timeout]
    return live, late


def _wake_at(
    pending: Sequence[PendingSession], waiting: Mapping[str, PendingReason], view: ClusterView, now: dt.datetime
) -> dt.datetime | None:
    """Returns the earliest future ``starts_at`` or pending-timeout deadline of a waiting session."""
    timeouts: dict[str, dt.timedelta | None] = {}
    earliest: dt.datetime | None = None
    for session in pending:
        if session.session_id not in waiting:
            continue
        group = session.resource_group
        if group not in timeouts:
            timeouts[group] = _timeout(_options(view, group))
        timeout = timeouts[group]
        moments = [session.starts_at] if session.starts_at is not None and session.starts_at > now else []
        if timeout is not None:
            moments.append(session.requested_at + timeout)
        for moment in moments:
            if earliest is None or moment < earliest:
                earliest = moment
    return earliest
