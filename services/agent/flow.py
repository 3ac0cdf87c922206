"""The agent's event flow: what it consumes, as tables of event class -> handler.

``KERNELS``: the durable consumer ``agent-<id>`` on the agent's own aggregate
(``ev.agent.<id>.>``): assignments and termination requests are carried out by
``KernelLifecycle``, up to ``KERNELS_AT_ONCE`` kernels at once (each kernel's events in order);
the aggregate's other events are acknowledged and need nothing.
``RECALL``: the same history, replayed once at start (ordered consumer) so that kernels
adopted after a restart are known by session.
"""

from __future__ import annotations

from contracts import agent as ev
from contracts.envelope import Event
from contracts.subjects import EVENTS_STREAM
from services.agent.kernels import KernelLifecycle
from services.common.flow import Subscription, skip

__all__ = ["ATTEMPTS", "FLOW", "KERNELS", "KERNELS_AT_ONCE", "RECALL"]

ATTEMPTS = 5
"""Deliveries of one event of the agent's aggregate before it is given up (dead-lettered)."""
KERNELS_AT_ONCE = 16
"""Events of the agent's aggregate held at once and carried out concurrently, one lane per kernel
(``services.common.lanes``): a burst of assignments starts its kernels at once (Docker creates and
starts containers in parallel), not one after the other; a long pull holds back only its own
kernel's events, never the next assignment."""


def kernel_lane(event: Event) -> str | None:
    """The lane of an event of the agent's aggregate: its kernel (None: the agent's own events)."""
    return getattr(event, "kernel_id", None)

KERNELS = Subscription(
    name="agent-{agent_id}",
    stream=EVENTS_STREAM,
    durable=True,
    aggregate="{agent_id}",
    named=True,
    max_deliver=ATTEMPTS,
    batch=KERNELS_AT_ONCE,
    concurrent_by=kernel_lane,
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
