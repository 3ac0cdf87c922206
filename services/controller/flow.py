"""The controller's event flow: what it consumes, as tables of message class -> handler.

* ``REPORTS_IN`` — the durable consumer ``controller`` on ``REPORTS``: every report type,
  fetched up to ``REPORT_BATCH`` at once and applied by ``ReportHandler`` (progress reports
  of one fetch in one transaction).
* ``STORAGE_REPORTS_IN`` — the durable consumer ``controller-storage`` on ``REPORTS``: every
  storage report (``rp.storage.>``), applied in order by ``StorageReportHandler`` as folder events.
* ``AGENTS`` — the agents' registrations, losses and recoveries, followed from the start of
  ``EVENTS``: liveness and the lost-agent sweep know every agent and its status.
* ``DEADLINES`` — the events the session timeouts learn from (``timeouts.TIMEOUT_EVENTS``)
  and the stuck-session deadlines (``stuck.STUCK_EVENTS``), followed from the start.
"""

from __future__ import annotations

import asyncio

from contracts import agent as agent_ev
from contracts import session as session_ev
from contracts import tenancy
from contracts.envelope import Event
from contracts.reports import ALL_REPORTS
from contracts.status import AgentStatus
from contracts.subjects import EVENTS_STREAM, REPORTS_STREAM
from contracts.storage_reports import ALL_STORAGE_REPORTS
from services.common.flow import Subscription
from services.controller.agent_lost import LostAgents
from services.controller.liveness import Liveness
from services.controller.reports import ReportHandler
from services.controller.storage_reports import StorageReportHandler
from services.controller.stuck import STUCK_EVENTS, StuckDeadlines
from services.controller.timeouts import TIMEOUT_EVENTS, Deadlines

__all__ = ["AGENTS", "DEADLINES", "DURABLE", "FLOW", "REPORTS_IN", "REPORT_BATCH", "STORAGE_REPORTS_IN", "AgentWatch",
           "DeadlineWatch"]

DURABLE = "controller"
REPORT_BATCH = 256
"""Reports fetched at once; their progress reports are recorded in one transaction."""


class AgentWatch:
    """Tells the liveness check and the lost-agent sweep what the agent events say."""

    def __init__(self, liveness: Liveness, lost: LostAgents) -> None:
        self._liveness = liveness
        self._lost = lost

    def alive(self, event: Event) -> None:
        self._liveness.status(event.originator_id, AgentStatus.ALIVE)
        self._lost.alive(event.originator_id)

    def lost(self, event: Event) -> None:
        self._liveness.status(event.originator_id, AgentStatus.LOST)
        self._lost.lost(event.originator_id, event.timestamp)


class DeadlineWatch:
    """Teaches ``Deadlines`` and ``StuckDeadlines`` an event and wakes their enforcement."""

    def __init__(self, deadlines: Deadlines, changed: asyncio.Event, stuck: StuckDeadlines | None = None,
                 stuck_changed: asyncio.Event | None = None) -> None:
        self._deadlines = deadlines
        self._changed = changed
        self._stuck = stuck
        self._stuck_changed = stuck_changed

    def apply(self, event: Event) -> None:
        self._deadlines.apply(event)
        self._changed.set()
        if self._stuck is not None:
            self._stuck.apply(event)
        if self._stuck_changed is not None:
            self._stuck_changed.set()


REPORTS_IN = Subscription(
    name=DURABLE,
    stream=REPORTS_STREAM,
    durable=True,
    batch=REPORT_BATCH,
    routes=dict.fromkeys(ALL_REPORTS, ReportHandler.__call__),
    description="Agent reports -> session and agent commands, idempotently.",
)

STORAGE_REPORTS_IN = Subscription(
    name="controller-storage",
    stream=REPORTS_STREAM,
    durable=True,
    batch=64,
    routes=dict.fromkeys(ALL_STORAGE_REPORTS, StorageReportHandler.__call__),
    description="Storage reports -> folder events (provisioned, purged, content, usage), idempotently.",
)

AGENTS = Subscription(
    name="controller-agents",
    stream=EVENTS_STREAM,
    routes={
        agent_ev.AgentRegistered: AgentWatch.alive,
        agent_ev.AgentRecovered: AgentWatch.alive,
        agent_ev.AgentLost: AgentWatch.lost,
    },
    ignored=(agent_ev.AgentCapacityChanged, agent_ev.KernelAssigned, agent_ev.KernelTerminationRequested,
             agent_ev.KernelReleased, agent_ev.OrphanContainerDestroyed),
    description="Every agent and its status, for liveness and the lost-agent sweep.",
)

DEADLINES = Subscription(
    name="controller-deadlines",
    stream=EVENTS_STREAM,
    routes=dict.fromkeys((*TIMEOUT_EVENTS, *STUCK_EVENTS), DeadlineWatch.apply),
    ignored=(
        session_ev.KernelPreparing, session_ev.KernelCreating,
        session_ev.KernelStarted, session_ev.KernelTerminated, session_ev.SessionPendingReasonChanged,
        tenancy.KeypairDeactivated,
    ),
    description="Running sessions, their executions and the keypairs' policies, and sessions in a "
                "transitional state: the session timeouts and the stuck-session deadlines.",
)

FLOW = (REPORTS_IN, STORAGE_REPORTS_IN, AGENTS, DEADLINES)
