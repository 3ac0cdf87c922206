"""The fault suite's table: fault, sessions, converged, lost, duplicated, drift, time to recover."""

from __future__ import annotations

from typing import Sequence

from ops.faults.scenarios import Outcome

__all__ = ["format_outcomes"]

HEADER = ("fault", "sessions", "converged", "lost", "duplicated", "drift", "recover s", "result")


def format_outcomes(outcomes: Sequence[Outcome]) -> str:
    """``lost``: stored events never published to EVENTS; ``duplicated``: positions published more than
    once; ``drift``: read-model tables unlike a rebuild, plus doctor's verdict; ``recover s``: from the end
    of the last fault to a clean doctor."""
    rows = [HEADER]
    for o in outcomes:
        drift = ",".join(o.verdict.drift) or "0"
        if not o.verdict.doctor_clean:
            drift += " (doctor not clean)"
        rows.append((o.fault, str(o.requested), str(o.converged), str(o.verdict.ledger.lost),
                     str(o.verdict.ledger.duplicated), drift, f"{o.recovery:.1f}", "ok" if o.ok else "FAILED"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
