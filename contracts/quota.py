"""Events of the quota context: usage per scope (keypair, project, domain).

One ``Quota`` aggregate per scope (id ``quota_<scope>_<name>``) holds the slots of
every session that occupies resources. The scheduler records ``QuotaConsumed`` in
the same transaction as the placements; ``QuotaReleased`` follows on every exit path
(terminated, error, cancelled, agent lost), exactly once per session and scope.
"""

from __future__ import annotations

from decimal import Decimal
from enum import Enum

from contracts.envelope import Event

__all__ = ["QuotaConsumed", "QuotaReleased", "QuotaScope", "quota_id"]


class QuotaScope(str, Enum):
    KEYPAIR = "keypair"
    PROJECT = "project"
    DOMAIN = "domain"


def quota_id(scope: QuotaScope, name: str) -> str:
    """Returns the aggregate id of the usage of one scope: ``quota_keypair_AKIA…``."""
    return f"quota_{QuotaScope(scope).value}_{name}"


class QuotaConsumed(Event, frozen=True, kw_only=True, tag="quota.consumed"):
    """Sessions placed by one scheduling pass start holding these slots."""

    scope: QuotaScope
    name: str
    allocations: dict[str, dict[str, Decimal]]
    """session id -> slots (the sum over its kernels)."""


class QuotaReleased(Event, frozen=True, kw_only=True, tag="quota.released"):
    scope: QuotaScope
    name: str
    session_id: str
    slots: dict[str, Decimal]
