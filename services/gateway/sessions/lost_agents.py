"""A live session whose agent is lost, said where its status cannot say it.

An agent silent past the heartbeat timeout is LOST; its kernels are ended (``agent-lost``) only once it
has been lost for ``BERTH_AGENT_LOST_GRACE`` seconds, so that an agent that stalled comes back to its
sessions. Meanwhile the session is still RUNNING (its containers may well run on), but nothing can be
run in it: its ``statusDetail`` says which agent was lost, since when, and when the session ends unless
the agent returns. Read from the agents' read model at query time: nothing is recorded for it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from contracts.status import SessionStatus
from projections.queries.rows import SessionRow

__all__ = ["agents_to_check", "lost_agent_detail"]

_PLACED = frozenset(status.value for status in (
    SessionStatus.SCHEDULED, SessionStatus.PREPARING, SessionStatus.CREATING, SessionStatus.RUNNING,
    SessionStatus.TERMINATING))
"""The statuses of a session with kernels on agents that are not ended."""


def agents_to_check(rows: Sequence[SessionRow]) -> list[str]:
    """Returns the agents of the sessions of ``rows`` that have kernels placed and not ended, sorted."""
    return sorted({agent for row in rows if row.status in _PLACED for agent in row.agent_ids or ()})


def lost_agent_detail(row: SessionRow, lost: Mapping[str, dt.datetime], grace: float) -> str | None:
    """Returns, for people, that agents of the session ``row`` are lost (``lost``: agent id → when) and when
    the session ends unless they return (``grace`` seconds after the first was lost); None when none is."""
    if row.status not in _PLACED:
        return None
    gone = sorted(agent for agent in row.agent_ids or () if agent in lost)
    if not gone:
        return None
    since = min(lost[agent] for agent in gone)
    ends = since + dt.timedelta(seconds=grace)
    names = ", ".join(gone)
    one = len(gone) == 1
    return (f"{'agent' if one else 'agents'} {names} lost at {_utc(since)} (no heartbeat): nothing runs in the"
            f" session meanwhile, and it ends at {_utc(ends)} unless {'it comes' if one else 'they come'} back")


def _utc(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
