"""Use cases of the agent context: registration and liveness."""

from __future__ import annotations

from contracts import commands as c
from domain import agent as agent_domain
from domain.agent import AgentState
from domain.emitting import Context
from services.application.long_lived import LONG_LIVED
from services.common.store import BerthApplication, retry_on_conflict

__all__ = ["Agents"]


class Agents(BerthApplication):
    """Loads agents, decides, saves."""

    long_lived = LONG_LIVED

    def get(self, agent_id: str) -> AgentState | None:
        """Returns the current state of an agent, None when unknown."""
        return self.current(agent_id, agent_domain.evolve)

    def handle(self, agent_id: str, command: c.Command, ctx: Context) -> int | None:
        """Applies ``command`` to one agent; returns the position, None when nothing changed."""
        return retry_on_conflict(
            lambda: self.record(agent_domain.decide(self.get(agent_id), command, ctx, agent_id))
        )
