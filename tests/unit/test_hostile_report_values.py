"""What an agent's credential in a hostile hand can put in its own reports, from report to event (no I/O): values the
read models cannot store (an exit code over 32 bits, a NUL in a container id or a host name) and an invalid resource
group are never recorded; a flood of progress lines records at most ``PROGRESS_BURST`` at once and one per
``PROGRESS_INTERVAL`` after."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from decimal import Decimal

import msgspec
import pytest

from contracts import commands as c
from contracts import session as ev
from contracts.envelope import Metadata
from contracts.reports import AgentStarted, KernelExitedReport, KernelRunningReport, OrphanDestroyedReport
from contracts.status import AgentStatus, SessionStatus
from domain import agent as agent_domain
from domain import session as s
from domain.emitting import Context
from domain.errors import InvalidRequestError
from services.controller.reports import command_for
from tests.unit.test_domain_session import at

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
BURST, INTERVAL = 3, dt.timedelta(seconds=1)
"""``domain.session.PROGRESS_BURST`` and ``PROGRESS_INTERVAL``."""
IDS = {"agent_id": "a1", "observed_at": NOW, "kernel_id": "k1"}


def ctx_at(now: dt.datetime) -> Context:
    counter = itertools.count(1)
    return Context(now=now, metadata=Metadata(actor="test", correlation_id="corr"),
                   new_id=lambda: uuid.UUID(int=next(counter)))


@pytest.mark.parametrize("code", [2**31, -(2**31) - 1, 2**64, -(10**300)])
def test_an_exit_code_no_read_model_can_store_is_recorded_as_unknown(code: int) -> None:
    """Before, the event held it, and the projector dead-lettered the kernel's end (``kernels.exit_code`` is an
    ``integer``): the kernel stayed RUNNING in the read models. The exit itself still applies."""
    exited = command_for(KernelExitedReport(**IDS, session_id="s1", exit_code=code))
    assert isinstance(exited, c.MarkKernelExited) and exited.exit_code is None
    orphan = command_for(OrphanDestroyedReport(**IDS, container_id="c", exit_code=code))
    assert isinstance(orphan, c.RecordOrphanDestroyed) and orphan.exit_code is None


@pytest.mark.parametrize("code", [None, 0, 137, -9, -(2**31), 2**31 - 1])
def test_an_exit_code_in_range_is_kept(code: int | None) -> None:
    exited = command_for(KernelExitedReport(**IDS, session_id="s1", exit_code=code))
    assert isinstance(exited, c.MarkKernelExited) and exited.exit_code == code


def test_a_container_id_holds_no_control_character() -> None:
    """A NUL there was refused by PostgreSQL's text: the projector dead-lettered the kernel's start."""
    running = command_for(KernelRunningReport(**IDS, session_id="s1", container_id="c\x00id\x1b"))
    assert running == c.MarkKernelStarted(kernel_id="k1", container_id="c\ufffdid\ufffd")
    orphan = command_for(OrphanDestroyedReport(**IDS, container_id="\x00c"))
    assert isinstance(orphan, c.RecordOrphanDestroyed) and orphan.container_id == "\ufffdc"
    docker = command_for(KernelRunningReport(**IDS, session_id="s1", container_id="a" * 64))
    assert isinstance(docker, c.MarkKernelStarted) and docker.container_id == "a" * 64


def test_a_host_name_and_backend_hold_no_control_character() -> None:
    """A NUL there had the projector dead-letter the agent's registration: no row for the agent, and every later
    event of it dead-lettered as well."""
    started = AgentStarted(agent_id="a1", observed_at=NOW, capacity={"cpu": Decimal(1)}, backend="dock\x00er",
                           hostname="h\x00st\n")
    command = command_for(started)
    assert isinstance(command, c.RegisterAgent)
    assert (command.backend, command.hostname) == ("dock\ufffder", "h\ufffdst")


@pytest.mark.parametrize("group", ["", "a b", "x.y", "r\x00", "g" * 200])
def test_a_registration_in_an_invalid_resource_group_is_refused(group: str) -> None:
    """As a session's resource group: a subject token (an agent in one no session can name serves nobody)."""
    command = c.RegisterAgent(capacity={"cpu": Decimal(1)}, backend="b", hostname="h", resource_group=group)
    with pytest.raises(InvalidRequestError, match="resource group"):
        agent_domain.decide(None, command, ctx_at(NOW), "a1")


def test_a_registration_in_a_valid_resource_group_is_recorded() -> None:
    command = c.RegisterAgent(capacity={"cpu": Decimal(1)}, backend="b", hostname="h", resource_group="gpu-east_1")
    (event,) = agent_domain.decide(None, command, ctx_at(NOW), "a1")
    assert event.resource_group == "gpu-east_1"  # type: ignore[attr-defined]


def progress(state: s.SessionState, now: dt.datetime, count: int) -> tuple[s.SessionState, int]:
    """Decides ``count`` progress reports at ``now``; returns the state and how many events they recorded."""
    recorded = 0
    for index in range(count):
        events = s.decide(state, c.RecordKernelProgress(kernel_id="k1", detail=f"line {index}"), ctx_at(now), "s1")
        for event in events:
            state = s.evolve(state, event)
        recorded += len(events)
    return state, recorded


def test_a_flood_of_progress_records_a_burst_then_one_per_interval() -> None:
    """Before, every report of a flood was recorded: the event store grew as fast as the controller took them."""
    state, recorded = progress(at(SessionStatus.PREPARING), NOW, 1000)
    assert recorded == BURST
    state, recorded = progress(state, NOW + INTERVAL / 2, 100)
    assert recorded == 0
    state, recorded = progress(state, NOW + INTERVAL, 100)
    assert recorded == 1
    state, recorded = progress(state, NOW + 60 * INTERVAL, 100)
    assert recorded == BURST, "after a quiet while, a burst again"


def test_an_agent_sending_every_two_seconds_and_its_last_line_at_once_loses_nothing() -> None:
    state = at(SessionStatus.PREPARING)
    total = 0
    for second in range(0, 20, 2):
        state, recorded = progress(state, NOW + dt.timedelta(seconds=second), 1)
        total += recorded
    state, recorded = progress(state, NOW + dt.timedelta(seconds=18, milliseconds=1), 1)  # flush: the last line
    assert total + recorded == 11


def test_the_rate_is_kept_by_replay_and_read_from_a_state_saved_before_it_was_kept() -> None:
    state, _ = progress(at(SessionStatus.PREPARING), NOW, BURST)
    assert s.PROGRESS_BURST == BURST and s.PROGRESS_INTERVAL == INTERVAL
    assert state.kernel("k1").progress_due == NOW + BURST * INTERVAL
    older = msgspec.json.encode(state).replace(b',"progress_due":"2026-01-01T00:00:03Z"', b"")
    assert b"progress_due" not in older
    assert msgspec.json.decode(older, type=s.SessionState).kernel("k1").progress_due is None
    progressed = s.decide(state, c.RecordKernelProgress(kernel_id="k1", detail="x"), ctx_at(NOW), "s1")
    assert progressed == []
    assert isinstance(s.decide(at(SessionStatus.PREPARING), c.RecordKernelProgress(kernel_id="k1", detail="x"),
                               ctx_at(NOW), "s1")[0], ev.KernelProgressed)


def registered_agent() -> agent_domain.AgentState:
    command = c.RegisterAgent(capacity={"cpu": Decimal(4)}, backend="b", hostname="h")
    return agent_domain.replay(agent_domain.decide(None, command, ctx_at(NOW), "a1"))  # type: ignore[return-value]


def agent_run(state: agent_domain.AgentState, command: c.Command, now: dt.datetime
              ) -> tuple[agent_domain.AgentState, int | Exception]:
    """Decides ``command`` at ``now``; returns the state and how many events it recorded (or its refusal)."""
    try:
        events = agent_domain.decide(state, command, ctx_at(now), "a1")
    except InvalidRequestError as exc:
        return state, exc
    for event in events:
        state = agent_domain.evolve(state, event)
    return state, len(events)


def test_a_flood_of_orphans_is_refused_past_a_burst_then_one_per_second() -> None:
    """Before, every orphan report was recorded (a replayed one too): the event store grew without bound."""
    burst = 1024
    state = registered_agent()
    outcomes = []
    for index in range(burst + 10):
        command = c.RecordOrphanDestroyed(kernel_id=f"k{index}", container_id=f"c{index}")
        state, outcome = agent_run(state, command, NOW)
        outcomes.append(outcome)
    assert outcomes[:burst] == [1] * burst
    assert all(isinstance(o, InvalidRequestError) and "orphans" in str(o) for o in outcomes[burst:])
    assert agent_run(state, c.RecordOrphanDestroyed(kernel_id="k", container_id="c"), NOW + INTERVAL)[1] == 1
    assert agent_domain.ORPHAN_BURST == burst and agent_domain.ORPHAN_INTERVAL == INTERVAL


def test_a_flapping_capacity_is_not_recorded_past_a_burst_then_once_a_minute() -> None:
    """Before, each change was recorded: each one a scheduling pass over every pending session. Past the rate the
    capacity stays as it was (the registration is not refused: a lost agent still recovers)."""
    state = registered_agent()
    outcomes = []
    for index in range(10):
        command = c.RegisterAgent(capacity={"cpu": Decimal(5 + index)}, backend="b", hostname="h")
        state, outcome = agent_run(state, command, NOW)
        outcomes.append(outcome)
    assert outcomes == [1] * 5 + [0] * 5 and state.capacity == {"cpu": Decimal(9)}
    same = c.RegisterAgent(capacity=dict(state.capacity), backend="b", hostname="h")
    assert agent_run(state, same, NOW)[1] == 0, "a registration that changes nothing is no change"
    other = c.RegisterAgent(capacity={"cpu": Decimal(99)}, backend="b", hostname="h")
    assert agent_run(state, other, NOW + dt.timedelta(minutes=1))[1] == 1
    assert agent_domain.CAPACITY_BURST == 5 and agent_domain.CAPACITY_INTERVAL == dt.timedelta(minutes=1)


def test_a_lost_agent_over_the_capacity_rate_still_recovers_when_it_registers() -> None:
    state = registered_agent()
    for index in range(5):
        state, _ = agent_run(state, c.RegisterAgent(capacity={"cpu": Decimal(5 + index)}, backend="b", hostname="h"),
                             NOW)
    state, lost = agent_run(state, c.MarkAgentLost(last_seen=0.0), NOW)
    assert lost == 1 and state.status is AgentStatus.LOST
    state, outcome = agent_run(state, c.RegisterAgent(capacity={"cpu": Decimal(99)}, backend="b", hostname="h"), NOW)
    assert outcome == 1 and state.status is AgentStatus.ALIVE and state.capacity == {"cpu": Decimal(9)}


def test_a_clock_set_back_refuses_nothing() -> None:
    """Due times recorded before the controller's clock went back an hour are never reached by the rate: they refuse
    no capacity change, no orphan, no progress line for that hour."""
    earlier = NOW - dt.timedelta(hours=1)
    state = registered_agent()
    for index in range(10):
        state, _ = agent_run(state, c.RegisterAgent(capacity={"cpu": Decimal(5 + index)}, backend="b", hostname="h"),
                             NOW)
    assert agent_run(state, c.RegisterAgent(capacity={"cpu": Decimal(99)}, backend="b", hostname="h"), earlier)[1] == 1
    for index in range(1030):
        state, _ = agent_run(state, c.RecordOrphanDestroyed(kernel_id=f"k{index}", container_id="c"), NOW)
    assert agent_run(state, c.RecordOrphanDestroyed(kernel_id="k", container_id="c"), earlier)[1] == 1
    session, _ = progress(at(SessionStatus.PREPARING), NOW, 10)
    assert progress(session, earlier, 1)[1] == 1


def test_a_message_id_becomes_a_causation_id_without_control_characters_and_bounded() -> None:
    from services.controller.reports import causation_of

    assert causation_of(None) is None
    assert causation_of("a1:k1:kernel_running") == "a1:k1:kernel_running"
    assert causation_of("a\x00b") == "a\ufffdb"
    assert len(causation_of("x" * 60_000) or "") == 512
    assert causation_of(" \t") is None
