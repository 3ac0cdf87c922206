"""Validators: small checks run on each session before any agent is looked at.

Each takes the session's demand and the pass context and returns None (go on) or the
``PendingReason`` that keeps the session waiting; the first reason wins. Their order
is ``VALIDATORS``: session type, start time, dependencies, concurrency, quota.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable, Mapping

from contracts.tenancy import ResourceGroupOptions
from domain.scheduling import reasons
from domain.scheduling.demand import Demand
from domain.scheduling.model import PendingReason
from domain.scheduling.quota import QuotaLedger

__all__ = [
    "VALIDATORS",
    "Context",
    "Validator",
    "check_concurrency",
    "check_dependencies",
    "check_quota",
    "check_session_type",
    "check_starts_at",
    "first_reason",
]


@dataclass(frozen=True, slots=True)
class Context:
    """What validators may consult: the group, its options, the time, finished sessions, quotas."""

    group: str
    options: ResourceGroupOptions
    now: dt.datetime
    finished: Mapping[str, bool]
    ledger: QuotaLedger


Validator = Callable[[Demand, Context], PendingReason | None]


def check_session_type(demand: Demand, ctx: Context) -> PendingReason | None:
    """Refuses a session type the resource group does not allow."""
    kind = demand.session.session_type
    if kind in ctx.options.allowed_session_types:
        return None
    allowed = [t.value for t in ctx.options.allowed_session_types]
    return reasons.session_type_not_allowed(kind.value, ctx.group, allowed)


def check_starts_at(demand: Demand, ctx: Context) -> PendingReason | None:
    """Holds a session whose ``starts_at`` is still in the future."""
    starts_at = demand.session.starts_at
    if starts_at is not None and starts_at > ctx.now:
        return reasons.starts_later(starts_at)
    return None


def check_dependencies(demand: Demand, ctx: Context) -> PendingReason | None:
    """Holds a session until every dependency finished successfully; names failed ones first."""
    dependencies = demand.session.dependencies
    if not dependencies:
        return None
    failed = [d for d in dependencies if ctx.finished.get(d) is False]
    if failed:
        return reasons.dependency_failed(failed)
    waiting = [d for d in dependencies if ctx.finished.get(d) is not True]
    return reasons.dependency_unmet(waiting) if waiting else None


def check_concurrency(demand: Demand, ctx: Context) -> PendingReason | None:
    """Holds a session whose keypair already holds ``max_concurrent_sessions`` sessions."""
    return ctx.ledger.concurrency(demand.session)


def check_quota(demand: Demand, ctx: Context) -> PendingReason | None:
    """Holds a session that would take a keypair, project or domain over its slot limits."""
    return ctx.ledger.quota(demand.session, demand.total)


VALIDATORS: tuple[Validator, ...] = (
    check_session_type,
    check_starts_at,
    check_dependencies,
    check_concurrency,
    check_quota,
)


def first_reason(demand: Demand, ctx: Context) -> PendingReason | None:
    """Returns the reason of the first validator that refuses ``demand``, or None."""
    for validator in VALIDATORS:
        reason = validator(demand, ctx)
        if reason is not None:
            return reason
    return None
