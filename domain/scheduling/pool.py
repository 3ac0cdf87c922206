"""The alive agents of one resource group, their free slots, and the order a strategy visits them.

Free slots are scaled integers (see ``fixedpoint``). Strategies:

- ``dispersed``: lowest utilisation first, then largest capacity, then agent id;
- ``concentrated``: highest utilisation first, then smallest capacity, then agent id
  (bin-packing);
- ``roundrobin``: agents by id, starting at a cursor that moves past each agent picked.

Utilisation is the *dominant* one: the maximum over the agent's slots (those with a
capacity) of occupied / capacity, in billionths, floored. Taking the maximum rather than
the mean means that an agent whose CPUs are all taken counts as full however much
memory it has left. Capacities compare slot by slot in slot-name order. Utilisation
only orders agents; whether a request fits is always decided on exact integers.

Free slots only shrink during a pass (a rolled-back gang gives back exactly what it
took), so an agent that cannot hold the *floor* (the slot-wise minimum of every
request of the group in this pass) leaves the visiting order for good; this keeps a
saturated cluster from being scanned agent by agent for every session.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Sequence

from contracts.tenancy import SelectionStrategy
from domain.scheduling.fixedpoint import SlotScale, Sparse
from domain.scheduling.model import AgentView

__all__ = ["AgentPool"]

_UNIT = 10**9
Key = tuple[int, tuple[int, ...], str, int]


class AgentPool:
    """Free slots of a group's alive agents, ordered by the group's selection strategy."""

    def __init__(
        self,
        agents: Sequence[AgentView],
        scale: SlotScale,
        strategy: SelectionStrategy,
        cursor: int,
        floor: Sparse,
    ) -> None:
        """Takes the group's alive agents sorted by id, the pass's scale, and the floor request."""
        self.ids = [agent.agent_id for agent in agents]
        self.position = {agent_id: i for i, agent_id in enumerate(self.ids)}
        self.capacity = [scale.dense(agent.capacity) for agent in agents]
        self.free = [
            [c - o for c, o in zip(cap, scale.dense(agent.occupied))]
            for cap, agent in zip(self.capacity, agents)
        ]
        self._sized = [[(i, c) for i, c in enumerate(cap) if c > 0] for cap in self.capacity]
        self._strategy = strategy
        self._floor = floor
        self.cursor = cursor % len(agents) if agents else 0
        if strategy is SelectionStrategy.DISPERSED:
            self._ties = [tuple(-c for c in cap) for cap in self.capacity]
        else:
            self._ties = [tuple(cap) for cap in self.capacity]
        self._keys: list[Key | None] = [self._key(i) for i in range(len(agents))]
        self._member = [self.fits(i, floor) for i in range(len(agents))]
        members = [i for i in range(len(agents)) if self._member[i]]
        self._order: list[Key] = sorted(k for i, k in enumerate(self._keys) if k and self._member[i])
        self._live: list[int] = members

    def __len__(self) -> int:
        return len(self.ids)

    def fits(self, index: int, request: Sparse) -> bool:
        """Returns True when agent ``index`` has every requested amount free now."""
        free = self.free[index]
        for slot, amount in request:
            if free[slot] < amount:
                return False
        return True

    def could_fit(self, index: int, request: Sparse) -> bool:
        """Returns True when agent ``index`` could hold ``request`` if it were empty."""
        capacity = self.capacity[index]
        return all(capacity[slot] >= amount for slot, amount in request)

    def totals(self) -> list[int]:
        """Returns the capacity of the whole group, slot by slot."""
        return [sum(column) for column in zip(*self.capacity)] if self.capacity else []

    def find(self, request: Sparse, among: Sequence[int] | None = None) -> int | None:
        """Returns the first agent in strategy order with room for ``request``, or None.

        ``among`` restricts the search to these agents (designated agents).
        """
        if among is not None:
            for index in self._ranked(among):
                if self.fits(index, request):
                    return index
            return None
        free = self.free
        if self._strategy is SelectionStrategy.ROUNDROBIN:
            live = self._live
            start = bisect_left(live, self.cursor)
            for at in range(start - len(live), start):
                index = live[at]
                if _room(free[index], request):
                    return index
            return None
        for key in self._order:
            index = key[3]
            if _room(free[index], request):
                return index
        return None

    def take(self, index: int, request: Sparse) -> None:
        """Allocates ``request`` on agent ``index`` (the caller checked it fits)."""
        free = self.free[index]
        for slot, amount in request:
            free[slot] -= amount
        self._reposition(index)
        if self._strategy is SelectionStrategy.ROUNDROBIN:
            self.cursor = (index + 1) % len(self.ids)

    def restore(self, index: int, request: Sparse) -> None:
        """Gives back ``request`` on agent ``index`` (rolling back a tentative ``take``)."""
        free = self.free[index]
        for slot, amount in request:
            free[slot] += amount
        self._reposition(index)

    def _ranked(self, among: Sequence[int]) -> list[int]:
        if self._strategy is SelectionStrategy.ROUNDROBIN:
            count = len(self.ids)
            return sorted(among, key=lambda i: (i - self.cursor) % count)
        return sorted(among, key=lambda i: self._keys[i] or ())

    def _key(self, index: int) -> Key | None:
        if self._strategy is SelectionStrategy.ROUNDROBIN:
            return None
        free = self.free[index]
        utilisation = 0
        for slot, capacity in self._sized[index]:
            used = (capacity - free[slot]) * _UNIT // capacity
            if used > utilisation:
                utilisation = used
        if self._strategy is SelectionStrategy.CONCENTRATED:
            utilisation = -utilisation
        return (utilisation, self._ties[index], self.ids[index], index)

    def _reposition(self, index: int) -> None:
        old, new = self._keys[index], self._key(index)
        self._keys[index] = new
        was, now = self._member[index], self.fits(index, self._floor)
        self._member[index] = now
        if self._strategy is SelectionStrategy.ROUNDROBIN:
            if was and not now:
                del self._live[bisect_left(self._live, index)]
            elif now and not was:
                insort(self._live, index)
            return
        if was and old is not None:
            del self._order[bisect_left(self._order, old)]
        if now and new is not None:
            insort(self._order, new)


def _room(free: list[int], request: Sparse) -> bool:
    for slot, amount in request:
        if free[slot] < amount:
            return False
    return True
