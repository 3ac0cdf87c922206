"""``berth doctor``'s checks: do the read models agree with each other? (pure, no I/O)

* **quota**: each quota scope (keypair = the session owner, project, domain) holds
  exactly the sessions that occupy resources (SCHEDULED … TERMINATING), and its slots
  are the sum of their requested slots;
* **agents**: each agent's occupied slots and allocated kernels are exactly its
  kernels that are not terminal;
* **relay**: the relay is not stuck at an event NATS refused (``berth_relay_stuck``);
  while it is, nothing after that event reaches the read models.

Rows are mappings as read from the read models (``sessions``, ``kernels``, ``agents``,
``quota_usage``); slot amounts may be decimal strings or numbers. Each disagreement is
a ``Drift`` whose ``expected`` is what the other read models imply.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any, Iterable, Mapping

import msgspec

from contracts.quota import QuotaScope
from contracts.status import KernelStatus, SessionStatus
from services.common.relay_status import RelayStuck

__all__ = [
    "AGENT_KINDS", "CHECK_KINDS", "HOLDING", "QUOTA_KINDS", "RELAY_KINDS", "Check", "DoctorReport", "Drift", "Row",
    "check_agents", "check_quotas", "check_relay", "diagnose", "persistent",
]

HOLDING = frozenset({
    SessionStatus.SCHEDULED, SessionStatus.PREPARING, SessionStatus.CREATING, SessionStatus.RUNNING,
    SessionStatus.TERMINATING,
})
"""Session statuses that hold resources (and quota)."""
QUOTA_KINDS = ("quota-sessions", "quota-slots")
"""Drift kinds of the quota check: the holding sessions differ; the slots differ."""
AGENT_KINDS = ("agent-kernels", "agent-occupied")
"""Drift kinds of the agent check: the allocated kernels differ; the occupied slots differ."""
RELAY_KINDS = ("relay-stuck",)
"""Drift kind of the relay check: an event the relay cannot publish holds back everything after it."""

CHECK_KINDS = {"quota": QUOTA_KINDS, "agents": AGENT_KINDS, "relay": RELAY_KINDS}
"""The drift kinds of each consistency check, by check name."""

Row = Mapping[str, Any]
Slots = dict[str, Decimal]


class Drift(msgspec.Struct, frozen=True, kw_only=True):
    """One disagreement: ``kind`` says what was compared, ``subject`` where (``keypair/AK…``,
    ``agent/a1``); ``expected`` and ``actual`` are JSON-ready values."""

    kind: str
    subject: str
    expected: Any
    actual: Any


class Check(msgspec.Struct, frozen=True, kw_only=True):
    """One check: its name, how many subjects it compared and how many drifted."""

    name: str
    subjects: int
    drifts: int


class DoctorReport(msgspec.Struct, frozen=True, kw_only=True):
    checks: list[Check]
    drifts: list[Drift]

    @property
    def clean(self) -> bool:
        """Returns True when no check found a drift."""
        return not self.drifts


def _slots(raw: Mapping[str, Any] | None) -> Slots:
    """Returns the non-zero amounts of ``raw`` as decimals."""
    amounts = {name: Decimal(str(value)) for name, value in (raw or {}).items()}
    return {name: amount for name, amount in sorted(amounts.items()) if amount != 0}


def _sum(maps: Iterable[Slots]) -> Slots:
    total: dict[str, Decimal] = defaultdict(Decimal)
    for slots in maps:
        for name, amount in slots.items():
            total[name] += amount
    return {name: amount for name, amount in sorted(total.items()) if amount != 0}


def _text(slots: Slots) -> dict[str, str]:
    return {name: str(amount) for name, amount in slots.items()}


def _compare(
    kinds: tuple[str, str], subject: str, expected: dict[str, Slots], actual: dict[str, Slots], actual_total: Slots
) -> list[Drift]:
    """Returns the drifts between two ``id -> slots`` holdings: the sets of ids (``kinds[0]``),
    then the totals (``kinds[1]``)."""
    drifts = []
    if set(expected) != set(actual):
        drifts.append(Drift(kind=kinds[0], subject=subject, expected=sorted(expected), actual=sorted(actual)))
    want = _sum(expected.values())
    if want != actual_total:
        drifts.append(Drift(kind=kinds[1], subject=subject, expected=_text(want), actual=_text(actual_total)))
    return drifts


def check_quotas(sessions: Iterable[Row], quotas: Iterable[Row]) -> tuple[Check, list[Drift]]:
    """Compares each quota scope's holding with the sessions that occupy resources."""
    expected: dict[tuple[str, str], dict[str, Slots]] = defaultdict(dict)
    for row in sessions:
        if SessionStatus(row["status"]) not in HOLDING:
            continue
        scopes = (
            (QuotaScope.KEYPAIR, row["owner"]),
            (QuotaScope.PROJECT, row.get("project") or "default"),
            (QuotaScope.DOMAIN, row.get("domain") or "default"),
        )
        for scope, name in scopes:
            expected[(scope.value, name)][row["session_id"]] = _slots(row["requested_slots"])
    actual: dict[tuple[str, str], dict[str, Slots]] = {}
    totals: dict[tuple[str, str], Slots] = {}
    for row in quotas:
        key = (QuotaScope(row["scope"]).value, row["name"])
        actual[key] = {sid: _slots(s) for sid, s in (row["sessions"] or {}).items()}
        totals[key] = _slots(row["slots"])
    drifts: list[Drift] = []
    keys = sorted(set(expected) | set(actual))
    for key in keys:
        subject = f"{key[0]}/{key[1]}"
        drifts += _compare(QUOTA_KINDS, subject, expected.get(key, {}), actual.get(key, {}), totals.get(key, {}))
    return Check(name="quota", subjects=len(keys), drifts=len(drifts)), drifts


def check_agents(kernels: Iterable[Row], agents: Iterable[Row]) -> tuple[Check, list[Drift]]:
    """Compares each agent's allocations and occupied slots with its kernels that are not terminal."""
    expected: dict[str, dict[str, Slots]] = defaultdict(dict)
    for row in kernels:
        if row.get("agent_id") and not KernelStatus(row["status"]).is_terminal:
            expected[row["agent_id"]][row["kernel_id"]] = _slots(row["slots"])
    actual: dict[str, dict[str, Slots]] = {}
    totals: dict[str, Slots] = {}
    for row in agents:
        actual[row["agent_id"]] = {kid: _slots(s) for kid, s in (row.get("allocations") or {}).items()}
        totals[row["agent_id"]] = _slots(row["occupied"])
    drifts: list[Drift] = []
    keys = sorted(set(expected) | set(actual))
    for agent_id in keys:
        drifts += _compare(AGENT_KINDS, f"agent/{agent_id}", expected.get(agent_id, {}), actual.get(agent_id, {}),
                           totals.get(agent_id, {}))
    return Check(name="agents", subjects=len(keys), drifts=len(drifts)), drifts


def check_relay(stuck: RelayStuck | None) -> tuple[Check, list[Drift]]:
    """Reports the event the relay is stuck at, if any: ``relay stuck at notification N: reason``."""
    if stuck is None:
        return Check(name="relay", subjects=1, drifts=0), []
    drift = Drift(kind=RELAY_KINDS[0], subject=f"notification/{stuck.notification_id}",
                  expected="published to EVENTS", actual=stuck.describe())
    return Check(name="relay", subjects=1, drifts=1), [drift]


def diagnose(sessions: Iterable[Row], kernels: Iterable[Row], agents: Iterable[Row], quotas: Iterable[Row],
             stuck: RelayStuck | None = None) -> DoctorReport:
    """Returns every check with its drifts (``stuck``: where the relay is stuck, if it is)."""
    quota_check, quota_drifts = check_quotas(sessions, quotas)
    agent_check, agent_drifts = check_agents(kernels, agents)
    relay_check, relay_drifts = check_relay(stuck)
    return DoctorReport(checks=[quota_check, agent_check, relay_check],
                        drifts=quota_drifts + agent_drifts + relay_drifts)


def persistent(first: DoctorReport, second: DoctorReport,
               kinds: Mapping[str, tuple[str, ...]] = CHECK_KINDS) -> DoctorReport:
    """Returns ``second`` keeping only the drifts that ``first`` found too (same kind and
    subject): a drift seen once may be a transaction the projector had half applied.
    ``kinds``: the drift kinds of each check, by check name."""
    seen = {(d.kind, d.subject) for d in first.drifts}
    drifts = [d for d in second.drifts if (d.kind, d.subject) in seen]
    checks = [
        Check(name=c.name, subjects=c.subjects, drifts=sum(1 for d in drifts if d.kind in kinds.get(c.name, ())))
        for c in second.checks
    ]
    return DoctorReport(checks=checks, drifts=drifts)
