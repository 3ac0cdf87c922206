"""Agent selection for one session: exclusion filters, then the strategy's first fit.

A single-node session is one placement group (the sum of its kernels) that must fit on
one agent. A multi-node session has one placement group per kernel; kernels may land
on different agents or share one with room, and the session is placed all at once or
not at all: a kernel that finds no room rolls back every tentative allocation (and the
round-robin cursor) made for the session.

Designated agents restrict the candidates; when none of them could ever hold a
placement group (absent, dead, in another group or too small) the reason is
``designated-agent``. A placement group larger than every agent of the group is
``too-large``, which (unlike Backend.AI) does not block the sessions behind it;
any other failure is ``no-agent``, which does.
"""

from __future__ import annotations

from domain.scheduling import reasons
from domain.scheduling.demand import Demand
from domain.scheduling.fixedpoint import SlotScale, Sparse
from domain.scheduling.model import PendingReason
from domain.scheduling.pool import AgentPool

__all__ = ["Kernels", "select"]

Kernels = tuple[tuple[str, str], ...]
"""(kernel_id, agent_id) per kernel, in the session's kernel order."""


def select(demand: Demand, pool: AgentPool, group: str, scale: SlotScale) -> Kernels | PendingReason:
    """Places ``demand`` on ``pool`` (taking the slots) or returns why it cannot be placed."""
    among = None
    designated = demand.session.designated_agents
    if designated:
        among = sorted({pool.position[a] for a in designated if a in pool.position})
        refusal = _designated_refusal(demand, pool, among, scale, group)
        if refusal is not None:
            return refusal
    elif not len(pool):
        return reasons.no_alive_agent(group)
    if demand.multi_node:
        return _place_gang(demand, pool, among, group, scale)
    index = pool.find(demand.total, among)
    if index is None:
        request = scale.slots(demand.total)
        if designated:
            return reasons.designated_busy(designated, request)
        if _too_large(pool, demand) is not None:
            return reasons.too_large(group, request)
        return reasons.no_agent_fits(group, request)
    pool.take(index, demand.total)
    agent_id = pool.ids[index]
    return tuple((kernel.kernel_id, agent_id) for kernel in demand.session.kernels)


def _too_large(pool: AgentPool, demand: Demand) -> Sparse | None:
    """Returns the first placement group of ``demand`` that no agent of the pool could hold
    even when empty, None when every group fits some agent."""
    for request in demand.groups():
        if not any(pool.could_fit(i, request) for i in range(len(pool))):
            return request
    return None


def _designated_refusal(
    demand: Demand, pool: AgentPool, among: list[int], scale: SlotScale, group: str
) -> PendingReason | None:
    designated = demand.session.designated_agents
    if not among:
        return reasons.designated_absent(designated, group)
    for request in demand.groups():
        if not any(pool.could_fit(index, request) for index in among):
            return reasons.designated_too_small(designated, scale.slots(request))
    return None


def _place_gang(
    demand: Demand, pool: AgentPool, among: list[int] | None, group: str, scale: SlotScale
) -> Kernels | PendingReason:
    cursor = pool.cursor
    taken: list[tuple[int, int]] = []
    too_large = _too_large(pool, demand) if among is None else None
    if too_large is not None:
        return reasons.too_large(group, scale.slots(too_large))
    for position, request in enumerate(demand.kernels):
        index = pool.find(request, among)
        if index is None:
            for done, agent in reversed(taken):
                pool.restore(agent, demand.kernels[done])
            pool.cursor = cursor
            kernel = demand.session.kernels[position]
            slots = scale.slots(request)
            if demand.session.designated_agents:
                return reasons.designated_busy(demand.session.designated_agents, slots)
            return reasons.kernel_does_not_fit(group, kernel.kernel_id, len(demand.kernels), slots)
        pool.take(index, request)
        taken.append((position, index))
    kernels = demand.session.kernels
    return tuple((kernels[position].kernel_id, pool.ids[index]) for position, index in taken)
