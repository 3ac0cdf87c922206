"""Sessions placed by hand, as the scheduler would place them: for tests of the controller and
the agent that need a session on a given agent without running the scheduler."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

from contracts import commands as c
from contracts import session as ev
from contracts.quota import QuotaReleased, QuotaScope, quota_id
from contracts.session import KernelPlacement, KernelSpec
from contracts.status import SessionStatus
from domain import agent as agent_domain
from domain import quota as quota_domain
from domain import session as session_domain
from domain.emitting import Emitter
from services.application.context import make_context
from services.application.sessions import Sessions

__all__ = ["AGENT", "GIB", "has_status", "quota_releases", "start_session", "status_changes"]

AGENT = "local"
GIB = Decimal(1024**3)


def start_session(sessions: Sessions, owner: str, *, agent: str = AGENT, image: str = "python:3.11",
                  session_id: str | None = None) -> str:
    """Records a one-kernel session of ``owner`` (id ``session_id``, else a new one) and places it on
    ``agent`` with its quota, as the scheduler does; returns its id."""
    session_id = session_id or uuid.uuid4().hex[:12]
    ctx = make_context("test")
    kernel = KernelSpec(kernel_id=f"{session_id}-k", slots={"cpu": Decimal(1), "mem": GIB})
    sessions.record([Emitter(session_id, 0, ctx)(ev.SessionRequested, owner=owner, spec=ev.SessionSpec(
        name="s", image=image, kernels=[kernel],
    ))])
    state = sessions.get(session_id)
    events = session_domain.decide(state, c.ScheduleSession(
        placements=[KernelPlacement(kernel_id=kernel.kernel_id, agent_id=agent)]), ctx, session_id)
    events += agent_domain.decide(agent_domain.replay(sessions.load(agent)), c.AssignKernel(
        kernel_id=kernel.kernel_id, session_id=session_id, image=image, slots=kernel.slots), ctx, agent)
    for scope, name in quota_domain.quota_scopes(owner, "default", "default"):
        qid = quota_id(scope, name)
        events += quota_domain.decide(quota_domain.replay(sessions.load(qid)),
                                      c.ConsumeQuota(allocations={session_id: dict(kernel.slots)}), ctx, qid)
    sessions.record(events)
    return session_id


def status_changes(sessions: Sessions, session_id: str) -> list[ev.SessionStatusChanged]:
    """Returns the status changes of ``session_id``, oldest first."""
    return [e for e in sessions.load(session_id) if isinstance(e, ev.SessionStatusChanged)]


async def has_status(sessions: Sessions, session_id: str, status: SessionStatus) -> bool:
    """Returns True when ``session_id`` is in ``status`` (for ``async_wait_for``)."""
    state = await asyncio.to_thread(sessions.get, session_id)
    return state is not None and state.status is status


def quota_releases(sessions: Sessions, owner: str, session_id: str) -> list[tuple[QuotaScope, str]]:
    """Returns the (scope, name) of each ``QuotaReleased`` of ``session_id`` in ``owner``'s scopes."""
    return [(e.scope, e.name) for scope, name in quota_domain.quota_scopes(owner, "default", "default")
            for e in sessions.load(quota_id(scope, name))
            if isinstance(e, QuotaReleased) and e.session_id == session_id]
