"""The Session aggregate: immutable state, ``evolve`` and ``decide``.

Transitions driven by agent reports are guarded like Backend.AI's compare-and-set
updates: a report that arrives twice or late yields no event instead of an error.
"""

from __future__ import annotations

import datetime as dt
from functools import singledispatch

import msgspec

from contracts import commands as c
from contracts import session as ev
from contracts.envelope import Event
from contracts.slots import ResourceSlots, SlotError, check_kernel_slots, parse_slots
from contracts.status import KernelStatus, Reason, SessionStatus, SessionType
from contracts.subjects import SubjectError, check_token
from domain.emitting import Context, Emitter
from domain.report_rate import next_due, over_rate
from domain.errors import AlreadyExistsError, InvalidRequestError, InvalidTransitionError, NotFoundError

__all__ = ["PROGRESS_BURST", "PROGRESS_INTERVAL", "KernelState", "SessionState", "decide", "evolve", "replay"]

MAX_NAME = 64
MIN_PRIORITY, MAX_PRIORITY = 0, 100
PROGRESS_INTERVAL = dt.timedelta(seconds=1)
PROGRESS_BURST = 3
"""A kernel's ``KernelProgressed`` are recorded at most one per ``PROGRESS_INTERVAL`` on average, ``PROGRESS_BURST``
at once (a cell-rate limit, ``domain.report_rate``: ``KernelState.progress_due``); a report beyond records nothing.
An agent sends one every 2 s at most and its last line at once (``services.agent.progress``). Before, only the agent
throttled itself: its credential sending progress as fast as the controller took it had every report recorded
(2,000 characters each)."""


class KernelState(msgspec.Struct, frozen=True, kw_only=True):
    kernel_id: str
    cluster_role: str
    slots: ResourceSlots
    status: KernelStatus = KernelStatus.PENDING
    agent_id: str | None = None
    container_id: str | None = None
    exit_code: int | None = None
    detail: str | None = None
    """Why it ended, for people (the cause of a failed start)."""
    progress_due: dt.datetime | None = None
    """When its next ``KernelProgressed`` is due at the rate ``PROGRESS_INTERVAL`` (the later of this and the last
    one's time, plus the interval; None before the first, and in a state saved before it was kept)."""


class SessionState(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    version: int
    owner: str
    """Access key of the owner."""
    spec: ev.SessionSpec
    """What was requested (its kernels as requested; ``kernels`` are their states)."""
    status: SessionStatus
    kernels: tuple[KernelState, ...]

    def kernel(self, kernel_id: str) -> KernelState:
        for kernel in self.kernels:
            if kernel.kernel_id == kernel_id:
                return kernel
        raise NotFoundError(f"session {self.id} has no kernel {kernel_id}")

    def with_kernel(self, kernel_id: str, **changes: object) -> tuple[KernelState, ...]:
        return tuple(
            msgspec.structs.replace(k, **changes) if k.kernel_id == kernel_id else k for k in self.kernels
        )


# ---------------------------------------------------------------- evolve


def evolve(state: SessionState | None, event: Event) -> SessionState:
    """Returns the state after ``event``."""
    return _apply(event, state)


@singledispatch
def _apply(event: Event, state: SessionState | None) -> SessionState:
    raise TypeError(f"Session cannot apply {type(event).__name__}")


def _bump(state: SessionState | None, event: Event, **changes: object) -> SessionState:
    assert state is not None, f"{type(event).__name__} before session.requested"
    return msgspec.structs.replace(state, version=event.originator_version, **changes)


@_apply.register
def _(event: ev.SessionRequested, state: SessionState | None) -> SessionState:
    return SessionState(
        id=event.originator_id,
        version=event.originator_version,
        owner=event.owner,
        spec=event.spec,
        status=SessionStatus.PENDING,
        kernels=tuple(
            KernelState(kernel_id=k.kernel_id, cluster_role=k.cluster_role, slots=dict(k.slots))
            for k in event.spec.kernels
        ),
    )


@_apply.register
def _(event: ev.SessionScheduled, state: SessionState) -> SessionState:
    where = {p.kernel_id: p.agent_id for p in event.placements}
    kernels = tuple(
        msgspec.structs.replace(k, status=KernelStatus.SCHEDULED, agent_id=where[k.kernel_id]) for k in state.kernels
    )
    return _bump(state, event, status=SessionStatus.SCHEDULED, kernels=kernels)


@_apply.register
def _(event: ev.KernelPreparing, state: SessionState) -> SessionState:
    return _bump(state, event, kernels=state.with_kernel(event.kernel_id, status=KernelStatus.PREPARING))


@_apply.register
def _(event: ev.KernelCreating, state: SessionState) -> SessionState:
    return _bump(state, event, kernels=state.with_kernel(event.kernel_id, status=KernelStatus.CREATING))


@_apply.register
def _(event: ev.KernelStarted, state: SessionState) -> SessionState:
    kernels = state.with_kernel(event.kernel_id, status=KernelStatus.RUNNING, container_id=event.container_id)
    return _bump(state, event, kernels=kernels)


@_apply.register
def _(event: ev.KernelTerminated, state: SessionState) -> SessionState:
    status = KernelStatus.ERROR if event.reason.fails_kernel else KernelStatus.TERMINATED
    kernels = state.with_kernel(event.kernel_id, status=status, exit_code=event.exit_code, detail=event.detail)
    return _bump(state, event, kernels=kernels)


@_apply.register
def _(event: ev.ExecutionFinished, state: SessionState) -> SessionState:
    return _bump(state, event)


@_apply.register
def _(event: ev.KernelProgressed, state: SessionState) -> SessionState:
    due = next_due(state.kernel(event.kernel_id).progress_due, event.timestamp, PROGRESS_INTERVAL)
    return _bump(state, event, kernels=state.with_kernel(event.kernel_id, progress_due=due))


@_apply.register
def _(event: ev.SessionPendingReasonChanged, state: SessionState) -> SessionState:
    return _bump(state, event)


@_apply.register
def _(event: ev.SessionStatusChanged, state: SessionState) -> SessionState:
    return _bump(state, event, status=event.status)


def replay(events: list[Event]) -> SessionState | None:
    """Returns the state after all ``events`` (None when there are none)."""
    state: SessionState | None = None
    for event in events:
        state = evolve(state, event)
    return state


# ---------------------------------------------------------------- decide

_BEFORE_PREPARING = {KernelStatus.SCHEDULED}
_BEFORE_CREATING = {KernelStatus.SCHEDULED, KernelStatus.PREPARING}
_BEFORE_RUNNING = {KernelStatus.SCHEDULED, KernelStatus.PREPARING, KernelStatus.CREATING}
_STARTING = {SessionStatus.SCHEDULED, SessionStatus.PREPARING, SessionStatus.CREATING}


def decide(state: SessionState | None, command: c.Command, ctx: Context, session_id: str) -> list[Event]:
    """Returns the events that ``command`` causes; raises a ``DomainError`` when refused."""
    return _decide(command, state, ctx, session_id)


@singledispatch
def _decide(command: c.Command, state: SessionState | None, ctx: Context, session_id: str) -> list[Event]:
    raise TypeError(f"Session cannot handle {type(command).__name__}")


def _existing(state: SessionState | None, session_id: str) -> SessionState:
    if state is None:
        raise NotFoundError(f"session {session_id} not found")
    return state


@_decide.register
def _(command: c.RequestSession, state: SessionState | None, ctx: Context, session_id: str) -> list[Event]:
    if state is not None:
        raise AlreadyExistsError(f"session {session_id} already exists")
    spec = command.spec
    _validate_request(spec, session_id)
    kernels = [msgspec.structs.replace(k, slots=parse_slots(k.slots)) for k in spec.kernels]
    spec = msgspec.structs.replace(spec, kernels=kernels, dependencies=list(spec.dependencies),
                                   designated_agents=list(spec.designated_agents))
    return [Emitter(session_id, 0, ctx)(ev.SessionRequested, owner=command.owner, spec=spec)]


def _validate_request(spec: ev.SessionSpec, session_id: str) -> None:
    try:
        check_token(session_id, "session id")
        slots = {check_token(k.kernel_id, "kernel id"): parse_slots(k.slots) for k in spec.kernels}
    except (SubjectError, SlotError) as exc:
        raise InvalidRequestError(str(exc)) from exc
    if not spec.kernels:
        raise InvalidRequestError("a session needs at least one kernel")
    if not 0 < len(spec.name) <= MAX_NAME:
        raise InvalidRequestError(f"session name must be 1-{MAX_NAME} characters")
    if not spec.image.strip():
        raise InvalidRequestError("image must not be empty")
    if spec.session_type is SessionType.BATCH and not (spec.startup_command or "").strip():
        # nothing would run in it and nothing would end it: it stayed RUNNING for ever (Backend.AI refuses it too)
        raise InvalidRequestError("a batch session needs a startup command (the command it runs to its end)")
    if len({k.kernel_id for k in spec.kernels}) != len(spec.kernels):
        raise InvalidRequestError("kernel ids must be unique")
    for kernel_id, kernel_slots in slots.items():
        if kernel_slots.get("cpu", 0) <= 0 or kernel_slots.get("mem", 0) <= 0:
            raise InvalidRequestError(f"kernel {kernel_id} needs positive 'cpu' and 'mem' slots")
        try:  # here, where every path that issues the command passes, not only the gateway's input
            check_kernel_slots(kernel_slots)
        except SlotError as exc:
            raise InvalidRequestError(f"kernel {kernel_id}: {exc}") from exc
    _validate_placement_options(spec, session_id)


STARTS_AT_RANGE = (dt.datetime(1970, 1, 1, tzinfo=dt.UTC), dt.datetime(9000, 1, 1, tzinfo=dt.UTC))
"""When a session may be asked to start, at the earliest and latest (a time in UTC outside Python's years failed
every checkpoint of the scheduler while the session was pending)."""


def _check_starts_at(starts_at: dt.datetime) -> None:
    if starts_at.tzinfo is None:
        raise InvalidRequestError("starts_at needs a time zone")
    earliest, latest = STARTS_AT_RANGE
    try:
        within = earliest <= starts_at.astimezone(dt.UTC) <= latest
    except OverflowError:  # 9999-12-31T23:59:59-12:00 is in year 10000 in UTC
        within = False
    if not within:
        raise InvalidRequestError(f"starts_at must be from {earliest.date()} to {latest.date()} (UTC), "
                                  f"got {starts_at.isoformat()}")


def _validate_placement_options(spec: ev.SessionSpec, session_id: str) -> None:
    """Checks the tenancy and scheduling options of a request (priority, batch timeout, ids)."""
    if not MIN_PRIORITY <= spec.priority <= MAX_PRIORITY:
        raise InvalidRequestError(f"priority must be between {MIN_PRIORITY} and {MAX_PRIORITY}, got {spec.priority}")
    if spec.batch_timeout < 0:
        raise InvalidRequestError(f"batch timeout must be >= 0 seconds, got {spec.batch_timeout}")
    if spec.starts_at is not None:
        _check_starts_at(spec.starts_at)
    try:
        for value, what in ((spec.domain, "domain"), (spec.project, "project"), (spec.resource_group, "resource group")):
            check_token(value, what)
        if spec.user:
            check_token(spec.user, "user")
        for dependency in spec.dependencies:
            check_token(dependency, "dependency session id")
        for agent_id in spec.designated_agents:
            check_token(agent_id, "designated agent id")
    except SubjectError as exc:
        raise InvalidRequestError(str(exc)) from exc
    if session_id in spec.dependencies:
        raise InvalidRequestError("a session cannot depend on itself")


@_decide.register
def _(command: c.ScheduleSession, state: SessionState | None, ctx: Context, session_id: str) -> list[Event]:
    state = _existing(state, session_id)
    if state.status is not SessionStatus.PENDING:
        raise InvalidTransitionError(f"session {session_id} is {state.status.value}, not PENDING")
    if sorted(p.kernel_id for p in command.placements) != sorted(k.kernel_id for k in state.kernels):
        raise InvalidRequestError(f"placements of session {session_id} must cover each kernel exactly once")
    return [Emitter(session_id, state.version, ctx)(ev.SessionScheduled, placements=list(command.placements))]


@_decide.register
def _(command: c.MarkKernelPreparing, state: SessionState | None, ctx: Context, session_id: str) -> list[Event]:
    state = _existing(state, session_id)
    if state.kernel(command.kernel_id).status not in _BEFORE_PREPARING:
        return []
    emit = Emitter(session_id, state.version, ctx)
    events: list[Event] = [emit(ev.KernelPreparing, kernel_id=command.kernel_id)]
    if state.status is SessionStatus.SCHEDULED:
        events.append(emit(ev.SessionStatusChanged, status=SessionStatus.PREPARING, reason=Reason.KERNEL_PREPARING))
    return events


@_decide.register
def _(command: c.MarkKernelCreating, state: SessionState | None, ctx: Context, session_id: str) -> list[Event]:
    state = _existing(state, session_id)
    if state.kernel(command.kernel_id).status not in _BEFORE_CREATING:
        return []
    emit = Emitter(session_id, state.version, ctx)
    events: list[Event] = [emit(ev.KernelCreating, kernel_id=command.kernel_id)]
    if state.status in (SessionStatus.SCHEDULED, SessionStatus.PREPARING):
        events.append(emit(ev.SessionStatusChanged, status=SessionStatus.CREATING, reason=Reason.KERNEL_CREATING))
    return events


@_decide.register
def _(command: c.MarkKernelStarted, state: SessionState | None, ctx: Context, session_id: str) -> list[Event]:
    state = _existing(state, session_id)
    if state.kernel(command.kernel_id).status not in _BEFORE_RUNNING:
        return []
    emit = Emitter(session_id, state.version, ctx)
    started = emit(ev.KernelStarted, kernel_id=command.kernel_id, container_id=command.container_id)
    events: list[Event] = [started]
    after = evolve(state, started)
    if state.status in _STARTING and all(k.status is KernelStatus.RUNNING for k in after.kernels):
        events.append(emit(ev.SessionStatusChanged, status=SessionStatus.RUNNING, reason=Reason.ALL_KERNELS_RUNNING))
    return events


@_decide.register
def _(command: c.MarkKernelExited, state: SessionState | None, ctx: Context, session_id: str) -> list[Event]:
    state = _existing(state, session_id)
    kernel_status = state.kernel(command.kernel_id).status
    if kernel_status.is_terminal:
        return []
    if command.reason is Reason.VANISHED and kernel_status is not KernelStatus.RUNNING:
        return []  # a kernel still starting has no container yet: its absence proves nothing
    emit = Emitter(session_id, state.version, ctx)
    exited = emit(ev.KernelTerminated, kernel_id=command.kernel_id, exit_code=command.exit_code, reason=command.reason,
                  detail=command.detail)
    events: list[Event] = [exited]
    after = evolve(state, exited)
    if state.status.is_terminal:
        return events
    detail = _why_ended(after)
    if all(k.status.is_terminal for k in after.kernels):
        failed = command.reason is Reason.TRANSITION_TIMEOUT or (
            command.reason is Reason.FAILED_TO_START and state.status is not SessionStatus.TERMINATING)
        status = SessionStatus.ERROR if failed else SessionStatus.TERMINATED
        events.append(emit(ev.SessionStatusChanged, status=status, reason=command.reason, detail=detail))
    elif state.status is not SessionStatus.TERMINATING:
        events.append(emit(ev.SessionStatusChanged, status=SessionStatus.TERMINATING, reason=command.reason,
                           detail=detail))
    return events


def _why_ended(state: SessionState) -> str | None:
    """Returns the detail of the first kernel that ended with one (the cause of a failed start
    stays the session's detail while its other kernels are stopped)."""
    return next((k.detail for k in state.kernels if k.status.is_terminal and k.detail), None)


@_decide.register
def _(command: c.RecordKernelProgress, state: SessionState | None, ctx: Context, session_id: str) -> list[Event]:
    state = _existing(state, session_id)
    kernel = state.kernel(command.kernel_id)
    preparing = kernel.status is KernelStatus.PREPARING and state.status in _STARTING
    if not preparing or not command.detail:
        return []
    if over_rate(kernel.progress_due, ctx.now, PROGRESS_INTERVAL, PROGRESS_BURST):
        return []  # over the rate: a flood of lines
    return [Emitter(session_id, state.version, ctx)(ev.KernelProgressed, kernel_id=command.kernel_id,
                                                    detail=command.detail)]


@_decide.register
def _(command: c.TerminateSession, state: SessionState | None, ctx: Context, session_id: str) -> list[Event]:
    state = _existing(state, session_id)
    if state.status.is_terminal:
        raise InvalidTransitionError(f"session {session_id} is already {state.status.value}")
    if state.status is SessionStatus.TERMINATING:
        return []
    emit = Emitter(session_id, state.version, ctx)
    if state.status is SessionStatus.PENDING:
        return [emit(ev.SessionStatusChanged, status=SessionStatus.CANCELLED, reason=command.reason)]
    return [emit(ev.SessionStatusChanged, status=SessionStatus.TERMINATING, reason=command.reason)]


@_decide.register
def _(command: c.RecordExecution, state: SessionState | None, ctx: Context, session_id: str) -> list[Event]:
    state = _existing(state, session_id)
    state.kernel(command.kernel_id)
    fields = msgspec.structs.asdict(command)
    return [Emitter(session_id, state.version, ctx)(ev.ExecutionFinished, **fields)]
