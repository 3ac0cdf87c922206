"""Agent lost: every kernel still allocated on a lost agent is marked exited (``agent-lost``)
once the agent has been lost for ``BERTH_AGENT_LOST_GRACE`` seconds.

An agent is lost after ``BERTH_HEARTBEAT_TIMEOUT`` seconds without a heartbeat: nothing new is
placed on it from then on. Its kernels are given the grace to come back with it (an agent stalled
by a busy host, a paused VM or a network blip, whose containers ran on): an agent recovered within
it keeps every session it ran. Only an agent lost for the whole grace has its kernels ended, as
Backend.AI does after its heartbeat timeout (40 s) and Kubernetes after its eviction timeout.

``Sessions.report`` with ``MarkKernelExited`` releases the kernel's allocation on the
agent, moves its session to TERMINATING (asking the session's kernels on healthy
agents to stop) or to TERMINATED once every kernel ended, and then releases the
session's quota. Each kernel is also asked to stop on the lost agent first, so that
if the agent comes back its orphaned container is destroyed.

Every step is idempotent, so the sweep is retry-safe: ``LostAgents`` remembers each
lost agent (from the agent events the controller follows from the start of the
stream, so a crash between ``AgentLost`` and the kernel exits is recovered at the
next start) until a sweep finds it holds nothing any more.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Awaitable, Callable

from contracts import commands as c
from contracts.envelope import utc_now
from contracts.status import AgentStatus, Reason
from domain.errors import DomainError
from services.application.agents import Agents
from services.application.context import make_context
from services.application.sessions import Sessions
from services.common.waiting import first_of

__all__ = ["AgentLostSweeper", "LostAgents", "sweep_lost_agents"]

log = logging.getLogger(__name__)

ACTOR = "service:controller"


class LostAgents:
    """The lost agents that may still hold allocations, and since when each is lost (no I/O)."""

    def __init__(self, grace: float = 0.0, clock: Callable[[], dt.datetime] = utc_now) -> None:
        if grace < 0:
            raise ValueError(f"BERTH_AGENT_LOST_GRACE must be 0 or more, got {grace}")
        self._grace = dt.timedelta(seconds=grace)
        self._clock = clock
        self._since: dict[str, dt.datetime] = {}
        self.wake = asyncio.Event()
        """Set when an agent is newly lost, so the sweep looks at once."""

    def lost(self, agent_id: str, at: dt.datetime) -> None:
        """Records that ``agent_id`` was lost at ``at`` (its ``AgentLost`` event's time, so that a
        controller restarted meanwhile counts the grace from the same moment): it is swept once the
        grace has passed, until it holds nothing. A loss already known keeps its first time."""
        self._since.setdefault(agent_id, at)
        self.wake.set()

    def alive(self, agent_id: str) -> None:
        """Records that ``agent_id`` is alive (registered or recovered): not swept."""
        self._since.pop(agent_id, None)

    def pending(self) -> list[str]:
        """Returns every lost agent still to sweep, by id, whether its grace has passed or not."""
        return sorted(self._since)

    def due(self) -> list[str]:
        """Returns the lost agents to sweep now (lost for the grace or longer), by id."""
        now = self._clock()
        return sorted(agent for agent, since in self._since.items() if now - since >= self._grace)

    def next_due(self) -> float | None:
        """Returns the seconds until the next lost agent's grace ends (0 when one is due now), or
        None when no agent is lost."""
        if not self._since:
            return None
        now = self._clock()
        return max(0.0, min((since + self._grace - now).total_seconds() for since in self._since.values()))

    def swept(self, agent_id: str) -> None:
        """Records that ``agent_id`` holds nothing any more."""
        self._since.pop(agent_id, None)


class AgentLostSweeper:
    """Marks the kernels of a lost agent exited (blocking: run it in the store's thread)."""

    def __init__(self, sessions: Sessions, agents: Agents) -> None:
        self._sessions = sessions
        self._agents = agents

    def sweep(self, agent_id: str) -> bool:
        """Marks every kernel allocated on ``agent_id`` exited with reason ``agent-lost`` when
        the agent is lost; returns True when it holds nothing more (or is alive or unknown)."""
        agent = self._agents.get(agent_id)
        if agent is None or agent.status is not AgentStatus.LOST:
            return True
        ctx = make_context(ACTOR)
        for kernel_id, allocation in sorted(agent.allocations.items()):
            self._agents.handle(agent_id, c.RequestKernelTermination(kernel_id=kernel_id, reason=Reason.AGENT_LOST), ctx)
            exited = c.MarkKernelExited(kernel_id=kernel_id, exit_code=None, reason=Reason.AGENT_LOST)
            try:
                self._sessions.report(allocation.session_id, exited, ctx)
            except DomainError as exc:  # the session or kernel is unknown: free the agent anyway
                log.warning("kernel %s on lost agent %s: %s; releasing it", kernel_id, agent_id, exc)
                self._agents.handle(agent_id, c.ReleaseKernel(kernel_id=kernel_id), ctx)
            log.info("kernel %s of session %s: agent %s lost", kernel_id, allocation.session_id, agent_id)
        after = self._agents.get(agent_id)
        return after is None or after.status is not AgentStatus.LOST or not after.allocations


Sweep = Callable[[str], Awaitable[bool]]


async def sweep_lost_agents(lost: LostAgents, sweep: Sweep, retry: float, stop: asyncio.Event) -> None:
    """Sweeps every lost agent whose grace has passed, when it passes, and again every ``retry``
    seconds while a sweep is unfinished (an error, or a kernel assigned meanwhile), until ``stop``
    is set."""
    while not stop.is_set():
        lost.wake.clear()
        unfinished = False
        for agent_id in lost.due():
            try:
                done = await sweep(agent_id)
            except Exception as exc:  # noqa: BLE001 - retried at the next sweep
                log.warning("could not sweep lost agent %s: %s", agent_id, exc)
                done = False
            if done:
                lost.swept(agent_id)
            unfinished = unfinished or not done
        await first_of(stop, lost.wake, timeout=retry if unfinished else lost.next_due())
