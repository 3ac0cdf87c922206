"""Several agents in one process: ``BERTH_AGENTS`` = N runs agents ``<agent_id>-1`` ... ``-N``.

For ``berth up --agents N`` (the simulated backend only: agents of a real backend would share one
machine's resources and count them several times). A simulated agent does little but wait, so N of
them share one interpreter far more cheaply than N processes would. When one of them fails, the
others are stopped and the failure is raised: the process ends, and its supervisor starts the
whole fleet again (each agent resumes from its durable consumer).
"""

from __future__ import annotations

import asyncio
import logging

import msgspec

from services.agent.main import run_agent
from services.common.settings import Settings

__all__ = ["fleet_settings", "run_fleet"]

log = logging.getLogger(__name__)


def fleet_settings(settings: Settings) -> list[Settings]:
    """Returns the settings of each agent: one named ``agent_id``, or ``agents`` of them named
    ``<agent_id>-1`` ... (simulated backend only)."""
    if settings.agents < 1:
        raise ValueError(f"BERTH_AGENTS must be at least 1, got {settings.agents}")
    if settings.agents == 1:
        return [settings]
    if settings.agent_backend != "simulated":
        raise ValueError(f"several local agents ({settings.agents}) need the simulated backend, not {settings.agent_backend!r}")
    return [msgspec.structs.replace(settings, agent_id=f"{settings.agent_id}-{i}") for i in range(1, settings.agents + 1)]


async def run_fleet(settings: Settings, stop: asyncio.Event) -> None:
    """Runs every agent of ``fleet_settings(settings)`` until ``stop`` is set; raises when one of
    them fails or returns before the stop (after stopping the others)."""
    agents = fleet_settings(settings)
    if len(agents) == 1:
        await run_agent(agents[0], stop)
        return
    inner = asyncio.Event()  # stops every agent: on ``stop``, or when one of them ends early
    tasks = [asyncio.create_task(run_agent(a, inner), name=f"agent {a.agent_id}") for a in agents]
    stopped = asyncio.create_task(stop.wait(), name="fleet-stop")
    try:
        await asyncio.wait([*tasks, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        inner.set()
        stopped.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for agent, result in zip(agents, results):
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise RuntimeError(f"agent {agent.agent_id} failed") from result
    if not stop.is_set():
        raise RuntimeError("an agent of the fleet returned before the stop")
