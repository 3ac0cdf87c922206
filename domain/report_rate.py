"""The rate at which what an agent reports is recorded: a cell-rate limit kept in an aggregate's state.

The state keeps when the next event of a kind is due (``next_due``: the later of the last due time and the event's
own time, plus ``interval``); one more is over the rate when it would be beyond ``burst`` at once or over one per
``interval`` on average (``over_rate``). Both are driven by event timestamps and the command's time, so a replay
decides the same way. A due time more than a whole burst ahead is never reached by the rate (the clock went back
since): it refuses nothing, for a clock set back an hour must not refuse an agent's reports for an hour. Used by the
agent (capacity changes, orphans) and the session (progress lines) aggregates.
"""

from __future__ import annotations

import datetime as dt

__all__ = ["next_due", "over_rate"]


def next_due(due: dt.datetime | None, at: dt.datetime, interval: dt.timedelta) -> dt.datetime:
    """Returns when the next event is due after one recorded ``at``, the last being due at ``due``."""
    return (at if due is None else max(due, at)) + interval


def over_rate(due: dt.datetime | None, now: dt.datetime, interval: dt.timedelta, burst: int) -> bool:
    """Returns whether one more event ``now`` would be over ``burst`` at once or one per ``interval``."""
    return due is not None and (burst - 1) * interval < due - now <= burst * interval
