"""Table tests of the Session aggregate: decide and evolve, no I/O."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from decimal import Decimal

import pytest

from contracts import commands as c
from contracts import session as ev
from contracts.envelope import Event, Metadata
from contracts.session import KernelPlacement, KernelSpec, SessionSpec
from contracts.status import KernelStatus, Reason, SessionStatus, SessionType
from domain import session as s
from domain.emitting import Context, Emitter
from domain.errors import AlreadyExistsError, InvalidRequestError, InvalidTransitionError, NotFoundError

SID = "s1"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def ctx() -> Context:
    counter = itertools.count(1)
    return Context(
        now=NOW,
        metadata=Metadata(actor="test", correlation_id="corr"),
        new_id=lambda: uuid.UUID(int=next(counter)),
    )


def kernel(kernel_id: str = "k1", cpu: str = "1", mem: str = "1024") -> KernelSpec:
    return KernelSpec(kernel_id=kernel_id, slots={"cpu": Decimal(cpu), "mem": Decimal(mem)})


def request(*kernels: KernelSpec, name: str = "n", image: str = "python:3.11") -> c.RequestSession:
    return c.RequestSession(owner="alice", spec=SessionSpec(name=name, image=image, kernels=list(kernels or [kernel()])))


def run(state: s.SessionState | None, command: c.Command, session_id: str = SID) -> tuple[s.SessionState | None, list[Event]]:
    """Decides ``command`` and returns the state after its events, with the events."""
    events = s.decide(state, command, ctx(), session_id)
    for event in events:
        state = s.evolve(state, event)
    return state, events


def types(events: list[Event]) -> list[str]:
    return [type(e).type_name() for e in events]


def schedule_cmd(*kernel_ids: str, agent: str = "a1") -> c.ScheduleSession:
    return c.ScheduleSession(placements=[KernelPlacement(kernel_id=k, agent_id=agent) for k in kernel_ids or ("k1",)])


def at(status: SessionStatus) -> s.SessionState:
    """Returns a one-kernel session driven to ``status`` through the public decisions."""
    state, _ = run(None, request())
    steps: list[c.Command] = [
        schedule_cmd(),
        c.MarkKernelPreparing(kernel_id="k1"),
        c.MarkKernelCreating(kernel_id="k1"),
        c.MarkKernelStarted(kernel_id="k1", container_id="cid"),
        c.TerminateSession(),
        c.MarkKernelExited(kernel_id="k1", exit_code=0, reason=Reason.USER_REQUESTED),
    ]
    for step in steps:
        assert state is not None
        if state.status is status:
            return state
        state, _ = run(state, step)
    assert state is not None and state.status is status
    return state


def test_full_lifecycle_emits_each_transition_once() -> None:
    expected = [
        (request(), ["session.requested"], SessionStatus.PENDING, KernelStatus.PENDING),
        (schedule_cmd(), ["session.scheduled"], SessionStatus.SCHEDULED, KernelStatus.SCHEDULED),
        (c.MarkKernelPreparing(kernel_id="k1"), ["session.kernel_preparing", "session.status_changed"],
         SessionStatus.PREPARING, KernelStatus.PREPARING),
        (c.MarkKernelCreating(kernel_id="k1"), ["session.kernel_creating", "session.status_changed"],
         SessionStatus.CREATING, KernelStatus.CREATING),
        (c.MarkKernelStarted(kernel_id="k1", container_id="cid"), ["session.kernel_started", "session.status_changed"],
         SessionStatus.RUNNING, KernelStatus.RUNNING),
        (c.TerminateSession(), ["session.status_changed"], SessionStatus.TERMINATING, KernelStatus.RUNNING),
        (c.MarkKernelExited(kernel_id="k1", exit_code=0, reason=Reason.USER_REQUESTED),
         ["session.kernel_terminated", "session.status_changed"], SessionStatus.TERMINATED, KernelStatus.TERMINATED),
    ]
    state: s.SessionState | None = None
    version = 0
    for command, names, status, kernel_status in expected:
        state, events = run(state, command)
        assert types(events) == names, command
        assert [e.originator_version for e in events] == list(range(version + 1, version + 1 + len(events)))
        version += len(events)
        assert state is not None
        assert (state.status, state.kernel("k1").status, state.version) == (status, kernel_status, version)
    assert state is not None
    assert state.kernel("k1").container_id == "cid"
    assert state.kernel("k1").agent_id == "a1"
    assert state.kernel("k1").exit_code == 0


def test_replay_rebuilds_the_same_state() -> None:
    state: s.SessionState | None = None
    history: list[Event] = []
    for command in (request(), schedule_cmd(), c.MarkKernelStarted(kernel_id="k1", container_id="x")):
        state, events = run(state, command)
        history += events
    assert s.replay(history) == state
    assert s.replay([]) is None


@pytest.mark.parametrize(
    ("status", "command"),
    [
        (SessionStatus.CREATING, c.MarkKernelPreparing(kernel_id="k1")),
        (SessionStatus.CREATING, c.MarkKernelCreating(kernel_id="k1")),
        (SessionStatus.RUNNING, c.MarkKernelPreparing(kernel_id="k1")),
        (SessionStatus.RUNNING, c.MarkKernelCreating(kernel_id="k1")),
        (SessionStatus.RUNNING, c.MarkKernelStarted(kernel_id="k1", container_id="cid")),
        (SessionStatus.TERMINATING, c.MarkKernelStarted(kernel_id="k1", container_id="other")),
        (SessionStatus.TERMINATED, c.MarkKernelStarted(kernel_id="k1", container_id="cid")),
        (SessionStatus.TERMINATED, c.MarkKernelExited(kernel_id="k1", exit_code=0)),
        (SessionStatus.TERMINATED, c.MarkKernelPreparing(kernel_id="k1")),
        (SessionStatus.TERMINATING, c.TerminateSession()),
    ],
    ids=lambda v: v.value if isinstance(v, SessionStatus) else type(v).__name__,
)
def test_duplicate_and_late_reports_yield_no_events(status: SessionStatus, command: c.Command) -> None:
    assert s.decide(at(status), command, ctx(), SID) == []


def test_running_skips_preparing_and_creating_when_reports_are_missing() -> None:
    state, events = run(at(SessionStatus.SCHEDULED), c.MarkKernelStarted(kernel_id="k1", container_id="c"))
    assert types(events) == ["session.kernel_started", "session.status_changed"]
    assert state is not None and state.status is SessionStatus.RUNNING


def test_terminate_pending_cancels() -> None:
    state, events = run(at(SessionStatus.PENDING), c.TerminateSession())
    assert types(events) == ["session.status_changed"]
    assert isinstance(events[0], ev.SessionStatusChanged) and events[0].reason is Reason.USER_REQUESTED
    assert state is not None and state.status is SessionStatus.CANCELLED


@pytest.mark.parametrize("status", [SessionStatus.SCHEDULED, SessionStatus.RUNNING])
def test_terminate_started_session_goes_terminating(status: SessionStatus) -> None:
    state, events = run(at(status), c.TerminateSession(reason=Reason.IDLE_TIMEOUT))
    assert types(events) == ["session.status_changed"]
    assert state is not None and state.status is SessionStatus.TERMINATING


@pytest.mark.parametrize("status", [SessionStatus.TERMINATED])
def test_terminate_finished_session_is_refused(status: SessionStatus) -> None:
    cancelled, _ = run(at(SessionStatus.PENDING), c.TerminateSession())
    for state in (at(status), cancelled):
        with pytest.raises(InvalidTransitionError):
            s.decide(state, c.TerminateSession(), ctx(), SID)


def test_schedule_is_refused_unless_pending() -> None:
    with pytest.raises(InvalidTransitionError):
        s.decide(at(SessionStatus.SCHEDULED), schedule_cmd(), ctx(), SID)
    cancelled, _ = run(at(SessionStatus.PENDING), c.TerminateSession())
    with pytest.raises(InvalidTransitionError):
        s.decide(cancelled, schedule_cmd(), ctx(), SID)


@pytest.mark.parametrize("kernel_ids", [(), ("k1", "k1"), ("k2",)], ids=["none", "twice", "unknown"])
def test_schedule_must_cover_each_kernel_once(kernel_ids: tuple[str, ...]) -> None:
    command = c.ScheduleSession(placements=[KernelPlacement(kernel_id=k, agent_id="a1") for k in kernel_ids])
    with pytest.raises(InvalidRequestError):
        s.decide(at(SessionStatus.PENDING), command, ctx(), SID)


def test_kernel_exit_while_running_terminates_the_session() -> None:
    state, events = run(at(SessionStatus.RUNNING), c.MarkKernelExited(kernel_id="k1", exit_code=3, reason=Reason.TASK_FAILED))
    assert types(events) == ["session.kernel_terminated", "session.status_changed"]
    assert state is not None and state.status is SessionStatus.TERMINATED
    assert state.kernel("k1").exit_code == 3


def test_failed_to_start_is_an_error() -> None:
    state, _ = run(at(SessionStatus.CREATING), c.MarkKernelExited(kernel_id="k1", reason=Reason.FAILED_TO_START))
    assert state is not None
    assert (state.status, state.kernel("k1").status) == (SessionStatus.ERROR, KernelStatus.ERROR)


@pytest.mark.parametrize("status", [SessionStatus.PREPARING, SessionStatus.CREATING, SessionStatus.TERMINATING])
def test_a_transition_timeout_is_an_error_even_while_terminating(status: SessionStatus) -> None:
    state, events = run(at(status), c.MarkKernelExited(kernel_id="k1", reason=Reason.TRANSITION_TIMEOUT, detail="d"))
    assert state is not None
    assert (state.status, state.kernel("k1").status) == (SessionStatus.ERROR, KernelStatus.ERROR)
    assert events[-1].reason is Reason.TRANSITION_TIMEOUT  # type: ignore[attr-defined]


@pytest.mark.parametrize("status", [SessionStatus.SCHEDULED, SessionStatus.PREPARING, SessionStatus.CREATING])
def test_a_vanished_report_ends_only_a_running_kernel(status: SessionStatus) -> None:
    vanished = c.MarkKernelExited(kernel_id="k1", reason=Reason.VANISHED)
    assert run(at(status), vanished)[1] == []  # still starting: no container yet proves nothing
    state, _ = run(at(SessionStatus.RUNNING), vanished)
    assert state is not None
    assert (state.status, state.kernel("k1").status) == (SessionStatus.TERMINATED, KernelStatus.TERMINATED)


def test_multi_kernel_session_runs_when_all_kernels_run() -> None:
    state, _ = run(None, request(kernel("k1"), kernel("k2")))
    state, _ = run(state, schedule_cmd("k1", "k2"))
    state, events = run(state, c.MarkKernelStarted(kernel_id="k1", container_id="c1"))
    assert types(events) == ["session.kernel_started"]
    assert state is not None and state.status is SessionStatus.SCHEDULED
    state, events = run(state, c.MarkKernelStarted(kernel_id="k2", container_id="c2"))
    assert types(events) == ["session.kernel_started", "session.status_changed"]
    assert state is not None and state.status is SessionStatus.RUNNING
    state, events = run(state, c.MarkKernelExited(kernel_id="k1", exit_code=0))
    assert state is not None and state.status is SessionStatus.TERMINATING
    state, events = run(state, c.MarkKernelExited(kernel_id="k2", exit_code=0))
    assert state is not None and state.status is SessionStatus.TERMINATED


@pytest.mark.parametrize(
    ("session_id", "command"),
    [
        (SID, request(kernel(cpu="-1"))),
        (SID, request(kernel(cpu="0"))),
        (SID, request(kernel(mem="0"))),
        (SID, request(KernelSpec(kernel_id="k1", slots={"cpu": Decimal(1), "mem": Decimal(1), "gpu": Decimal(1)}))),
        (SID, c.RequestSession(owner="alice", spec=SessionSpec(name="n", image="img", kernels=[]))),
        ("bad id", request()),
        ("", request()),
        (SID, request(kernel("bad.kernel"))),
        (SID, request(kernel("k1"), kernel("k1"))),
        (SID, request(name="")),
        (SID, request(name="x" * 65)),
        (SID, request(image="  ")),
    ],
    ids=[
        "negative-slot", "zero-cpu", "zero-mem", "unknown-slot", "no-kernels", "space-in-id", "empty-id",
        "dot-in-kernel-id", "duplicate-kernel", "empty-name", "long-name", "blank-image",
    ],
)
def test_bad_requests_are_refused(session_id: str, command: c.RequestSession) -> None:
    with pytest.raises(InvalidRequestError):
        s.decide(None, command, ctx(), session_id)


def test_a_kernel_asking_for_less_cpu_than_a_limit_can_be_is_refused_whoever_issues_the_request() -> None:
    """Only the gateway's input checked ``MIN_KERNEL_CPU``: a command issued another way (replayed, hand-written, a
    later API) was accepted with 0.001 cores, a session no backend that limits CPU can start."""
    with pytest.raises(InvalidRequestError, match=r"kernel k2: slot 'cpu': a kernel gets at least 0\.01 cores"):
        s.decide(None, request(kernel("k1"), kernel("k2", cpu="0.009")), ctx(), SID)
    state, _ = run(None, request(kernel(cpu="0.01")))
    assert state is not None and state.kernel("k1").slots["cpu"] == Decimal("0.01")


def test_request_normalises_slots() -> None:
    command = c.RequestSession(owner="o", spec=SessionSpec(
        name="n", image="i",
        kernels=[KernelSpec(kernel_id="k1", slots={"cpu": "2", "mem": "1g"})],  # type: ignore[dict-item]
    ))
    state, _ = run(None, command)
    assert state is not None
    assert state.kernel("k1").slots == {"cpu": Decimal(2), "mem": Decimal(1024**3)}


def test_request_twice_is_refused() -> None:
    with pytest.raises(AlreadyExistsError):
        s.decide(at(SessionStatus.PENDING), request(), ctx(), SID)


@pytest.mark.parametrize(
    "command",
    [c.TerminateSession(), schedule_cmd(), c.MarkKernelStarted(kernel_id="k1", container_id="c"),
     c.MarkKernelExited(kernel_id="k1")],
    ids=lambda v: type(v).__name__,
)
def test_unknown_session_is_not_found(command: c.Command) -> None:
    with pytest.raises(NotFoundError):
        s.decide(None, command, ctx(), SID)


def test_unknown_kernel_is_not_found() -> None:
    with pytest.raises(NotFoundError):
        s.decide(at(SessionStatus.SCHEDULED), c.MarkKernelStarted(kernel_id="nope", container_id="c"), ctx(), SID)


def test_events_carry_the_context() -> None:
    _, events = run(None, request())
    event = events[0]
    assert (event.originator_id, event.timestamp, event.metadata.actor) == (SID, NOW, "test")
    assert event.event_id == uuid.UUID(int=1)


@pytest.mark.parametrize("starts_at", [
    dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=-12))),  # year 10000 in UTC
    dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=14))),  # year 0 in UTC
    dt.datetime(1969, 12, 31, tzinfo=dt.UTC),
])
def test_a_start_time_outside_the_range_is_refused(starts_at: dt.datetime) -> None:
    """A time whose UTC is outside Python's years was accepted, and every checkpoint of the scheduler failed
    (msgpack) while the session was pending."""
    command = c.RequestSession(owner="ak", spec=SessionSpec(name="n", image="python:3.11", kernels=[kernel()],
                                                            starts_at=starts_at))
    with pytest.raises(InvalidRequestError, match="starts_at must be from 1970-01-01 to 9000-01-01"):
        run(None, command)


def test_a_start_time_in_range_and_any_zone_is_taken() -> None:
    starts_at = dt.datetime(8999, 12, 31, 12, tzinfo=dt.timezone(dt.timedelta(hours=-12)))
    command = c.RequestSession(owner="ak", spec=SessionSpec(name="n", image="python:3.11", kernels=[kernel()],
                                                            starts_at=starts_at))
    state, _ = run(None, command)
    assert state is not None


def batch_request(startup_command: str | None) -> c.RequestSession:
    spec = SessionSpec(name="n", image="python:3.11", kernels=[kernel()], session_type=SessionType.BATCH,
                       startup_command=startup_command)
    return c.RequestSession(owner="ak", spec=spec)


@pytest.mark.parametrize("startup_command", [None, "", "  \n"])
def test_a_batch_session_without_a_startup_command_is_refused(startup_command: str | None) -> None:
    """It was accepted and, once RUNNING, stayed so for ever: nothing ran in it and nothing ended it."""
    with pytest.raises(InvalidRequestError, match="a batch session needs a startup command"):
        run(None, batch_request(startup_command))
    state, _ = run(None, batch_request("make"))
    assert state is not None and state.spec.startup_command == "make"


def test_a_batch_session_recorded_without_a_startup_command_still_loads() -> None:
    """History is replayed, not re-validated: a session recorded before the refusal still has its state."""
    requested = Emitter(SID, 0, ctx())(ev.SessionRequested, owner="ak", spec=batch_request(None).spec)
    state = s.evolve(None, requested)
    assert state is not None and (state.status, state.spec.startup_command) == (SessionStatus.PENDING, None)
