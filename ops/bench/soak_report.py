"""The soak's results: per-round figures, the verdict, and the table ``ops/bench/soak.py`` prints."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AGENT_LOST", "CONVERGED", "ended_by_agent_loss", "settled", "RoundResult", "SoakResult", "counts", "format_table"]

CONVERGED = {"TERMINATED", "CANCELLED"}
AGENT_LOST = "agent-lost"
"""The status reason of a session ended because its agent was lost (the controller's heartbeat timeout):
converged, whether or not it had reached RUNNING (issue 13 item 5e)."""


def ended_by_agent_loss(row: dict[str, Any]) -> bool:
    """Did the session (a row of the ``sessions`` query) end because its agent was lost?"""
    return row["status"] in ("TERMINATED", "ERROR") and row.get("statusReason") == AGENT_LOST


def settled(row: dict[str, Any]) -> bool:
    """Has the session converged: RUNNING once, then TERMINATED or CANCELLED, or ended by agent loss?"""
    return ended_by_agent_loss(row) or ("RUNNING" in (row.get("statusHistory") or {}) and row["status"] in CONVERGED)


def counts(counter: Counter[str]) -> str:
    return ", ".join(f"{status} {n}" for status, n in counter.most_common()) or "none"



@dataclass
class RoundResult:
    index: int
    requested: int
    ids: list[str] = field(default_factory=list)
    create_errors: Counter[str] = field(default_factory=Counter)
    terminate_errors: Counter[str] = field(default_factory=Counter)
    first_create: float | None = None
    last_create_ack: float | None = None
    first_terminate: float | None = None
    terminated_requests: int = 0
    all_running_seen: bool = False
    last_running: float | None = None
    reached_running: int = 0
    agent_lost: int = 0  # sessions ended (TERMINATED or ERROR) with reason agent-lost
    settled: int = 0  # sessions RUNNING once then TERMINATED or CANCELLED, or ended because their agent was lost
    last_ended: float | None = None
    statuses: Counter[str] = field(default_factory=Counter)
    log_start: int | None = None
    log_end: int | None = None
    conflicts: int | None = None

    @property
    def create_rate(self) -> float | None:
        if not self.ids or self.first_create is None or self.last_create_ack is None:
            return None
        return len(self.ids) / max(self.last_create_ack - self.first_create, 1e-6)

    @property
    def running_rate(self) -> float | None:
        if not self.all_running_seen or self.last_running is None or self.first_create is None:
            return None
        return self.reached_running / max(self.last_running - self.first_create, 1e-6)

    @property
    def converged(self) -> bool:
        """Every request accepted, every session RUNNING once, then TERMINATED (or CANCELLED); a session
        whose agent was lost may have ended (TERMINATED or ERROR, reason agent-lost) before RUNNING."""
        return (not self.create_errors and len(self.ids) == self.requested and self.all_running_seen
                and self.settled == len(self.ids))

    @property
    def terminate_seconds(self) -> float | None:
        if not self.converged or self.first_terminate is None or self.last_ended is None:
            return None
        return self.last_ended - self.first_terminate

    @property
    def duration(self) -> float | None:
        """From the round's first createSession to its last session TERMINATED."""
        if not self.converged or self.first_create is None or self.last_ended is None:
            return None
        return self.last_ended - self.first_create


@dataclass
class SoakResult:
    rounds: list[RoundResult]
    doctor: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def converged(self) -> bool:
        return bool(self.rounds) and all(r.converged for r in self.rounds)

    @property
    def doctor_clean(self) -> bool:
        return bool(self.doctor and self.doctor.get("clean"))

    @property
    def ok(self) -> bool:
        """Every round converged, doctor clean, nothing else went wrong (timing is not judged here)."""
        return self.converged and self.doctor_clean and not self.problems

    def ratios(self) -> list[float | None]:
        """Each round's duration divided by the first round's."""
        base = self.rounds[0].duration if self.rounds else None
        return [r.duration / base if base and r.duration is not None else None for r in self.rounds]



def format_table(result: SoakResult) -> str:
    """The per-round table: round, sessions, create/s, RUNNING/s, terminate s, round s, conflicts, ratio, statuses."""
    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    header = ("round", "sessions", "create/s", "RUNNING/s", "terminate s", "round s", "conflicts", "ratio", "end state")
    rows = [header]
    for rnd, ratio in zip(result.rounds, result.ratios()):
        state = "converged" if rnd.converged else counts(rnd.statuses) if rnd.statuses else "nothing accepted"
        rows.append((str(rnd.index), f"{len(rnd.ids)}/{rnd.requested}", num(rnd.create_rate, ".1f"),
                     num(rnd.running_rate, ".1f"), num(rnd.terminate_seconds, ".1f"), num(rnd.duration, ".1f"),
                     "n/a" if rnd.conflicts is None else str(rnd.conflicts), num(ratio, ".2f") + ("x" if ratio else ""),
                     state))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) if i < len(header) - 1 else cell for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    doctor = result.doctor
    verdict = ("clean" if result.doctor_clean else f"{len(doctor['drifts'])} drift(s)") if doctor else "not run"
    lines.append(f"doctor: {verdict}" + (f" (read models at position {doctor['position']})" if doctor else "")
                 + f"; total {result.elapsed:.1f} s")
    lines += [f"problem: {p}" for p in result.problems]
    return "\n".join(lines)

