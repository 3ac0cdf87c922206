"""The scheduler's event flow: what it consumes, as a table of event class -> handler.

``SNAPSHOT``: the events the snapshot is built from (``snapshot.SNAPSHOT_EVENTS``), followed
at every start from the sequence after its checkpoint (``checkpoint.py``), or from the start of
``EVENTS`` when there is none it can trust (ordered consumer); a change that may allow a
placement wakes the pass runner. The session events of the kernels' lives are left out.
"""

from __future__ import annotations

from contracts import session as session_ev
from contracts import tenancy
from contracts.envelope import Event
from contracts.subjects import EVENTS_STREAM
from services.common.flow import Subscription
from services.scheduler.passes import PassRunner
from services.scheduler.snapshot import SNAPSHOT_EVENTS, Snapshot

__all__ = ["FLOW", "SNAPSHOT", "SnapshotFeed"]


class SnapshotFeed:
    """Applies an event to the snapshot and wakes the pass runner when it may allow a placement."""

    def __init__(self, snapshot: Snapshot, runner: PassRunner) -> None:
        self._snapshot = snapshot
        self._runner = runner

    def apply(self, event: Event) -> None:
        if self._snapshot.apply(event):
            self._runner.notify()


SNAPSHOT = Subscription(
    name="scheduler-snapshot",
    stream=EVENTS_STREAM,
    routes=dict.fromkeys(SNAPSHOT_EVENTS, SnapshotFeed.apply),
    ignored=(
        session_ev.KernelPreparing, session_ev.KernelProgressed, session_ev.KernelCreating, session_ev.KernelStarted,
        session_ev.KernelTerminated, session_ev.ExecutionFinished,
        tenancy.ProjectStorageLimitSet,
    ),
    description="The cluster as the scheduler sees it: pending sessions, agents, quota usage, tenancy limits.",
)

FLOW = (SNAPSHOT,)
