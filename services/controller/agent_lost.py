"""Agent lost: every kernel still allocated on a lost agent is marked exited (``agent-lost``).

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
import logging
from typing import Awaitable, Callable

from contracts import commands as c
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
    """The lost agents that may still hold allocations (no I/O)."""

    def __init__(self) -> None:
        self._pending: set[str] = set()
        self.wake = asyncio.Event()
        """Set when an agent is newly lost, so the sweep runs at once."""

    def lost(self, agent_id: str) -> None:
        """Records that ``agent_id`` was lost: it is swept until it holds nothing."""
        self._pending.add(agent_id)
        self.wake.set()

    def alive(self, agent_id: str) -> None:
        """Records that ``agent_id`` is alive (registered or recovered): not swept."""
        self._pending.discard(agent_id)

    def pending(self) -> list[str]:
        """Returns the agents still to sweep, by id."""
        return sorted(self._pending)

    def swept(self, agent_id: str) -> None:
        """Records that ``agent_id`` holds nothing any more."""
        self._pending.discard(agent_id)


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
    """Sweeps every pending lost agent when one is lost, and again every ``retry`` seconds while
    a sweep is unfinished (an error, or a kernel assigned meanwhile), until ``stop`` is set."""
    while not stop.is_set():
        lost.wake.clear()
        for agent_id in lost.pending():
            try:
                done = await sweep(agent_id)
            except Exception as exc:  # noqa: BLE001 - retried at the next sweep
                log.warning("could not sweep lost agent %s: %s", agent_id, exc)
                continue
            if done:
                lost.swept(agent_id)
        await first_of(stop, lost.wake, timeout=retry if lost.pending() else None)
