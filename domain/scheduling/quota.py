"""Quota usage during a pass: keypair, project and domain slots, keypair session counts.

The ledger starts from ``ClusterView.usage`` and is charged with every session the
pass places, so later sessions (in any resource group) see what the pass consumed.
Limits follow Backend.AI: a scope absent from its limits, or a slot absent from a
scope's limits, is unlimited; ``max_concurrent_sessions`` 0 is unlimited. Only the
slots a session asks for are checked: a scope already over its limit on ``mem``
still runs sessions that take no memory.
"""

from __future__ import annotations

from typing import Mapping

from contracts.quota import QuotaScope
from domain.scheduling import reasons
from domain.scheduling.fixedpoint import SlotScale, Sparse
from domain.scheduling.model import ClusterView, PendingReason, PendingSession, Slots

__all__ = ["QuotaLedger"]

Scope = tuple[QuotaScope, str]


class QuotaLedger:
    """What every quota scope holds, as scaled integers, and what it may hold."""

    def __init__(self, view: ClusterView, scale: SlotScale) -> None:
        self._view = view
        self._scale = scale
        self._limits: dict[Scope, dict[int, int]] = {}
        self._usage: dict[Scope, list[int]] = {}
        self._sessions: dict[str, int] = {}
        self._sources: dict[QuotaScope, Mapping[str, Slots]] = {
            QuotaScope.KEYPAIR: {k: v.total_resource_slots for k, v in view.keypair_limits.items()},
            QuotaScope.PROJECT: view.project_limits,
            QuotaScope.DOMAIN: view.domain_limits,
        }

    def concurrency(self, session: PendingSession) -> PendingReason | None:
        """Returns a reason when the owner already holds its ``max_concurrent_sessions``."""
        limits = self._view.keypair_limits.get(session.owner)
        if limits is None or limits.max_concurrent_sessions <= 0:
            return None
        running = self.sessions(session.owner)
        if running >= limits.max_concurrent_sessions:
            return reasons.concurrency_limit(session.owner, running, limits.max_concurrent_sessions)
        return None

    def quota(self, session: PendingSession, request: Sparse) -> PendingReason | None:
        """Returns one reason naming every scope whose slot limit ``request`` would exceed."""
        violations: list[reasons.Violation] = []
        for scope in _scopes(session):
            limits = self._limit(scope)
            if not limits:
                continue
            used = self._used(scope)
            for slot, amount in request:
                limit = limits.get(slot)
                if limit is not None and used[slot] + amount > limit:
                    violations.append(self._violation(scope, slot, used[slot], amount, limit))
        return reasons.quota_exceeded(violations) if violations else None

    def charge(self, session: PendingSession, request: Sparse) -> None:
        """Records that the pass placed ``session`` with ``request`` in every scope."""
        for scope in _scopes(session):
            used = self._used(scope)
            for slot, amount in request:
                used[slot] += amount
        self._sessions[session.owner] = self.sessions(session.owner) + 1

    def sessions(self, owner: str) -> int:
        """Returns the number of sessions ``owner`` holds, those placed by this pass included."""
        count = self._sessions.get(owner)
        if count is None:
            usage = self._view.usage.get((QuotaScope.KEYPAIR, owner))
            count = self._sessions[owner] = usage.sessions if usage else 0
        return count

    def dominant_share(self, owner: str, weights: list[int]) -> int:
        """Returns the owner's dominant share, scaled by the weights (see ``sequencing``)."""
        used = self._used((QuotaScope.KEYPAIR, owner))
        return max((u * w for u, w in zip(used, weights)), default=0)

    def used(self, scope: QuotaScope, name: str) -> dict[str, int]:
        """Returns the scaled usage of one scope by slot name (for tests and diagnostics)."""
        return dict(zip(self._scale.names, self._used((scope, name))))

    def _used(self, scope: Scope) -> list[int]:
        used = self._usage.get(scope)
        if used is None:
            usage = self._view.usage.get(scope)
            used = self._usage[scope] = self._scale.dense(usage.slots) if usage else [0] * self._scale.size
        return used

    def _limit(self, scope: Scope) -> dict[int, int]:
        limits = self._limits.get(scope)
        if limits is None:
            raw = self._sources[scope[0]].get(scope[1], {})
            index = self._scale.index
            limits = self._limits[scope] = {index[n]: self._scale.scaled(n, v) for n, v in raw.items()}
        return limits

    def _violation(self, scope: Scope, slot: int, used: int, asked: int, limit: int) -> reasons.Violation:
        amount = self._scale.amount
        return (
            scope[0].value,
            scope[1],
            self._scale.names[slot],
            amount(slot, used),
            amount(slot, asked),
            amount(slot, limit),
        )


def _scopes(session: PendingSession) -> tuple[Scope, Scope, Scope]:
    return (
        (QuotaScope.KEYPAIR, session.owner),
        (QuotaScope.PROJECT, session.project),
        (QuotaScope.DOMAIN, session.domain),
    )
