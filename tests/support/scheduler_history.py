"""A platform's history as the scheduler's snapshot sees it, built by hand (sessions requested,
placed, running, terminated or cancelled, agents registered / lost / recovered, quota consumed and
released, keypairs and policies) and published to ``EVENTS`` as the relay would."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from nats.js import JetStreamContext

from contracts import agent as agent_ev
from contracts import quota as quota_ev
from contracts import session as session_ev
from contracts import tenancy
from contracts.catalog import encode_event
from contracts.envelope import Event, Metadata
from contracts.quota import QuotaScope, quota_id
from contracts.status import Reason, SessionStatus
from contracts.subjects import EVENTS_STREAM, event_subject
from domain.emitting import Context, Emitter
from tests.support.waiting import async_wait_for

__all__ = ["History", "publish_history"]

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CTX = Context(now=NOW, metadata=Metadata(actor="test", correlation_id="c"))
GIB = Decimal(1024**3)
SCOPES = ((QuotaScope.KEYPAIR, "alice"), (QuotaScope.PROJECT, "default"), (QuotaScope.DOMAIN, "default"))


class History:
    """Events numbered per aggregate as the event store would number them, in recording order."""

    def __init__(self) -> None:
        self._versions: dict[str, int] = {}
        self.events: list[Event] = []

    def emit(self, aggregate: str, cls: type[Event], **fields: Any) -> Event:
        emitter = Emitter(aggregate, self._versions.get(aggregate, 0), CTX)
        event = emitter(cls, **fields)
        self._versions[aggregate] = emitter.version
        self.events.append(event)
        return event

    def tenancy(self) -> None:
        self.emit(tenancy.policy_id("small"), tenancy.ResourcePolicyCreated, name="small",
                  limits=tenancy.KeypairLimits(max_concurrent_sessions=1000))
        self.emit("alice", tenancy.KeypairCreated, user="alice", role=tenancy.Role.USER, resource_policy="small")

    def agent(self, agent_id: str, cpu: int = 64) -> None:
        self.emit(agent_id, agent_ev.AgentRegistered, capacity={"cpu": Decimal(cpu), "mem": 256 * GIB},
                  backend="simulated", hostname="h")

    def lose(self, agent_id: str) -> None:
        self.emit(agent_id, agent_ev.AgentLost, last_seen=0.0)

    def recover(self, agent_id: str) -> None:
        self.emit(agent_id, agent_ev.AgentRecovered)

    def request(self, session_id: str, dependencies: tuple[str, ...] = ()) -> None:
        kernel = session_ev.KernelSpec(kernel_id=f"{session_id}-k", slots={"cpu": Decimal(1), "mem": GIB})
        self.emit(session_id, session_ev.SessionRequested, owner="alice", spec=session_ev.SessionSpec(
            name="s", image="python:3.11", kernels=[kernel], dependencies=list(dependencies)))

    def pending_reason(self, session_id: str, code: str) -> None:
        self.emit(session_id, session_ev.SessionPendingReasonChanged, code=code, message=f"waiting: {code}")

    def place(self, session_ids: list[str], agent_id: str) -> None:
        """Places sessions as one scheduling pass does, then marks them RUNNING."""
        for session_id in session_ids:
            kernel_id = f"{session_id}-k"
            self.emit(session_id, session_ev.SessionScheduled,
                      placements=[session_ev.KernelPlacement(kernel_id=kernel_id, agent_id=agent_id)])
            self.emit(agent_id, agent_ev.KernelAssigned, kernel_id=kernel_id, session_id=session_id,
                      image="python:3.11", slots={"cpu": Decimal(1), "mem": GIB})
        for scope, name in SCOPES:
            self.emit(quota_id(scope, name), quota_ev.QuotaConsumed, scope=scope, name=name,
                      allocations={s: {"cpu": Decimal(1), "mem": GIB} for s in session_ids})
        for session_id in session_ids:
            self.emit(session_id, session_ev.SessionStatusChanged, status=SessionStatus.RUNNING,
                      reason=Reason.ALL_KERNELS_RUNNING)

    def terminate(self, session_id: str, agent_id: str, reason: Reason = Reason.TASK_FINISHED) -> None:
        kernel_id = f"{session_id}-k"
        self.emit(agent_id, agent_ev.KernelTerminationRequested, kernel_id=kernel_id, session_id=session_id,
                  reason=reason)
        self.emit(agent_id, agent_ev.KernelReleased, kernel_id=kernel_id, session_id=session_id)
        self.emit(session_id, session_ev.SessionStatusChanged, status=SessionStatus.TERMINATED, reason=reason)
        for scope, name in SCOPES:
            self.emit(quota_id(scope, name), quota_ev.QuotaReleased, scope=scope, name=name, session_id=session_id,
                      slots={"cpu": Decimal(1), "mem": GIB})

    def cancel(self, session_id: str) -> None:
        self.emit(session_id, session_ev.SessionStatusChanged, status=SessionStatus.CANCELLED,
                  reason=Reason.USER_REQUESTED)


async def publish_history(js: JetStreamContext, events: list[Event]) -> int:
    """Publishes ``events`` to ``EVENTS`` (pipelined: core publishes, then waits until the stream
    holds them all); returns the stream's last sequence."""
    before = (await js.stream_info(EVENTS_STREAM)).state.messages
    nc = js._nc  # noqa: SLF001 - the connection the context publishes on
    for event in events:
        await nc.publish(event_subject(type(event).type_name(), event.originator_id), encode_event(event))
    await nc.flush()
    want = before + len(events)

    async def stored() -> bool:
        return (await js.stream_info(EVENTS_STREAM)).state.messages >= want

    await async_wait_for(stored, timeout=60, interval=0.05, message="the stream did not take every event")
    return (await js.stream_info(EVENTS_STREAM)).state.last_seq
