"""``berth doctor``'s operational checks: is anything left behind? (pure, no I/O)

* **dead-letters**: every consumer's dead-letter subjects (``dlq.<consumer>``, and per agent
  ``dlq.<consumer>.<agent id>``) are empty — a message there was given up and waits for ``berth dlq``;
* **lag**: the relay published every event recorded when the doctor started (``relay-lag``:
  the event store's position against the last ``Berth-Position`` in ``EVENTS``), and the read
  models applied every event the stream holds of those (``projector-lag``), within the
  gateway's read wait;
* **stuck**: no session stays in a transitional status (SCHEDULED, PREPARING, CREATING,
  TERMINATING) beyond that status's deadline (``BERTH_STUCK_<STATUS>_TIMEOUT``; PREPARING
  counted from the last pull progress, as the controller does). The controller ends such a
  session; one reported here means the controller is not doing so.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Mapping

import msgspec

from contracts.status import SessionStatus
from contracts.subjects import dead_letter_consumer
from services.gateway.health.drift import Check, Drift, Row

__all__ = ["DEAD_LETTER_KINDS", "LAG_KINDS", "OPERATION_KINDS", "STUCK_KINDS", "Positions", "check_dead_letters",
           "check_lag", "check_stuck"]

DEAD_LETTER_KINDS = ("dead-letters",)
LAG_KINDS = ("relay-lag", "projector-lag")
STUCK_KINDS = ("session-stuck",)
OPERATION_KINDS = {"dead-letters": DEAD_LETTER_KINDS, "lag": LAG_KINDS, "stuck": STUCK_KINDS}
"""The drift kinds of each operational check, by check name."""


def check_dead_letters(counts: Mapping[str, int]) -> tuple[Check, list[Drift]]:
    """Reports each consumer with messages in its dead-letter subjects, whatever their sender: ``counts`` maps
    each dead-letter subject (``dlq.<consumer>``, ``dlq.<consumer>.<agent id>``) to how many it holds."""
    by_consumer: dict[str, int] = {}
    for subject, count in counts.items():
        consumer = dead_letter_consumer(subject)
        by_consumer[consumer] = by_consumer.get(consumer, 0) + count
    drifts = [Drift(kind=DEAD_LETTER_KINDS[0], subject=f"consumer/{consumer}", expected=0, actual=count)
              for consumer, count in sorted(by_consumer.items()) if count > 0]
    return Check(name="dead-letters", subjects=len(by_consumer), drifts=len(drifts)), drifts


class Positions(msgspec.Struct, frozen=True, kw_only=True):
    """Where each stage stands, as event-store positions (notification ids)."""

    store: int
    """The last event recorded when the doctor started."""
    stream: int
    """The last event the relay published to ``EVENTS``."""
    read_models: int
    """The last event the projector applied."""

    @property
    def relay_lag(self) -> int:
        """Events recorded but not yet published."""
        return max(self.store - self.stream, 0)

    @property
    def projector_lag(self) -> int:
        """Events published (of those recorded) but not yet applied to the read models."""
        return max(min(self.store, self.stream) - self.read_models, 0)


def check_lag(positions: Positions) -> tuple[Check, list[Drift]]:
    """Reports a relay or a projector still behind the position the doctor waited for."""
    drifts = []
    if positions.relay_lag:
        drifts.append(Drift(kind=LAG_KINDS[0], subject="stream/EVENTS", expected=positions.store,
                            actual=positions.stream))
    if positions.projector_lag:
        drifts.append(Drift(kind=LAG_KINDS[1], subject="read-models", expected=min(positions.store, positions.stream),
                            actual=positions.read_models))
    return Check(name="lag", subjects=2, drifts=len(drifts)), drifts


def check_stuck(sessions: Iterable[Row], deadlines: Mapping[SessionStatus, float],
                now: dt.datetime) -> tuple[Check, list[Drift]]:
    """Reports each session in a transitional status for longer than that status's deadline.
    Rows: ``session_id``, ``status``, ``status_since`` (when it entered it) and ``updated_at``
    (its last event: for PREPARING, the last pull progress)."""
    checked, drifts = 0, []
    for row in sessions:
        status = SessionStatus(row["status"])
        seconds = deadlines.get(status, 0)
        if not seconds:
            continue
        checked += 1
        since = _time(row.get("status_since")) or _time(row.get("updated_at"))
        if status is SessionStatus.PREPARING:
            since = max(filter(None, (since, _time(row.get("updated_at")))), default=None)
        if since is None:
            continue
        stayed = (now - since).total_seconds()
        if stayed > seconds:
            drifts.append(Drift(kind=STUCK_KINDS[0], subject=f"session/{row['session_id']}",
                                expected=f"out of {status.value} within {seconds:g} s",
                                actual=f"{status.value} for {stayed:.0f} s"))
    return Check(name="stuck", subjects=checked, drifts=len(drifts)), drifts


def _time(raw: Any) -> dt.datetime | None:
    if raw is None or isinstance(raw, dt.datetime):
        return raw
    return dt.datetime.fromisoformat(str(raw))
