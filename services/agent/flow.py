"""The agent's event flow: what it consumes, as tables of event class -> handler.

``KERNELS``: the durable consumer ``agent-<id>`` on the agent's own aggregate
(``ev.agent.<id>.>``): assignments and termination requests are carried out by
``KernelLifecycle``; the aggregate's other events are acknowledged and need nothing.
``RECALL``: the same history, replayed once at start (ordered consumer) so that kernels
adopted after a restart are known by session.
"""

from __future__ import annotations

from contracts import agent as ev
from contracts.subjects import EVENTS_STREAM
from services.agent.kernels import KernelLifecycle
from services.common.flow import Subscription, skip

__all__ = ["ATTEMPTS", "FLOW", "KERNELS", "RECALL"]

ATTEMPTS = 5
"""Deliveries of one event of the agent's aggregate before it is given up (dead-lettered)."""

KERNELS = Subscription(
    name="agent-{agent_id}",
    stream=EVENTS_STREAM,
    durable=True,
    aggregate="{agent_id}",
    named=True,
    max_deliver=ATTEMPTS,
    routes={
        ev.KernelAssigned: KernelLifecycle.handle,
        ev.KernelTerminationRequested: KernelLifecycle.handle,
        ev.AgentRegistered: skip,
        ev.AgentCapacityChanged: skip,
        ev.KernelReleased: skip,
        ev.OrphanContainerDestroyed: skip,
        ev.AgentLost: skip,
        ev.AgentRecovered: skip,
    },
    description="The agent's own aggregate: kernels to start and to stop.",
)

RECALL = Subscription(
    name="agent-{agent_id}-recall",
    stream=EVENTS_STREAM,
    aggregate="{agent_id}",
    named=True,
    routes={ev.KernelAssigned: KernelLifecycle.recall, ev.KernelReleased: KernelLifecycle.recall,
            ev.AgentRegistered: skip, ev.AgentCapacityChanged: skip, ev.KernelTerminationRequested: skip,
            ev.AgentLost: skip, ev.AgentRecovered: skip, ev.OrphanContainerDestroyed: skip},
    description="The agent's own history at start: which session each kernel it runs belongs to.",
)

FLOW = (KERNELS, RECALL)
