"""The controller's liveness decisions and report mapping (pure; fake clocks, no infrastructure)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from decimal import Decimal

import msgspec
import pytest
from nats.js import JetStreamContext

from contracts import commands as c
from contracts.reports import AgentHeartbeat, AgentStarted, KernelExitedReport, KernelPullingReport, KernelRunningReport
from contracts.status import AgentStatus, Reason
from services.common.flow import PermanentError
from services.common.bus import heartbeat_bucket
from services.controller.liveness import Liveness, check_liveness, latest_heartbeat
from tests.support.publish import js  # noqa: F401 - fixture
from services.controller.reports import agent_of_subject, command_for, reason_of


class Clock:
    def __init__(self) -> None:
        self.mono = 100.0
        self.wall = 1_000_000.0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def liveness(clock: Clock) -> Liveness:
    return Liveness(timeout=5.0, clock=lambda: clock.mono, wall=lambda: clock.wall)


def names(due: list[tuple[str, c.Command]]) -> list[tuple[str, str]]:
    return [(agent_id, type(command).__name__) for agent_id, command in due]


def test_a_beating_agent_stays_alive(liveness: Liveness, clock: Clock) -> None:
    liveness.status("a1", AgentStatus.ALIVE)
    for _ in range(10):
        clock.advance(1)
        liveness.heartbeat("a1", clock.wall)
        assert liveness.due() == []


def test_a_silent_agent_is_lost_once(liveness: Liveness, clock: Clock) -> None:
    liveness.status("a1", AgentStatus.ALIVE)
    liveness.heartbeat("a1", clock.wall - 0.5)
    clock.advance(5)
    assert liveness.due() == []
    clock.advance(0.1)
    ((agent_id, command),) = liveness.due()
    assert agent_id == "a1" and isinstance(command, c.MarkAgentLost)
    assert command.last_seen == clock.wall - 5.6, "the heartbeat's own send time"
    liveness.applied("a1", command)
    assert liveness.due() == []


def test_a_new_agent_gets_one_timeout_of_grace(liveness: Liveness, clock: Clock) -> None:
    liveness.status("a1", AgentStatus.ALIVE)
    clock.advance(4.9)
    assert liveness.due() == []
    clock.advance(0.2)
    assert names(liveness.due()) == [("a1", "MarkAgentLost")]


def test_a_lost_agent_that_beats_again_recovers(liveness: Liveness, clock: Clock) -> None:
    liveness.status("a1", AgentStatus.ALIVE)
    clock.advance(6)
    (due,) = liveness.due()
    liveness.applied(*due)
    clock.advance(10)
    assert liveness.due() == []
    liveness.heartbeat("a1", clock.wall)
    assert names(liveness.due()) == [("a1", "MarkAgentRecovered")]
    liveness.applied("a1", c.MarkAgentRecovered())
    assert liveness.due() == []


def test_old_heartbeats_found_at_start_do_not_recover_an_agent(liveness: Liveness, clock: Clock) -> None:
    liveness.status("a1", AgentStatus.LOST)
    liveness.heartbeat("a1", clock.wall - 60, live=False)
    assert liveness.due() == []
    liveness.heartbeat("a2", clock.wall - 1, live=False)
    liveness.status("a2", AgentStatus.LOST)
    assert names(liveness.due()) == [("a2", "MarkAgentRecovered")]


def test_agent_clocks_do_not_matter_for_live_heartbeats(liveness: Liveness, clock: Clock) -> None:
    liveness.status("a1", AgentStatus.ALIVE)
    liveness.heartbeat("a1", clock.wall - 3600)  # an agent whose clock is an hour late
    clock.advance(4)
    assert liveness.due() == []


def test_unregistered_agents_are_not_judged(liveness: Liveness, clock: Clock) -> None:
    liveness.heartbeat("stranger", clock.wall)
    clock.advance(60)
    assert liveness.due() == []
    liveness.status("a1", AgentStatus.ALIVE)
    liveness.forget("a1")
    clock.advance(60)
    assert liveness.due() == []


async def _check_once(liveness: Liveness, latest: Callable[[str], Awaitable[float | None]]) -> list[str]:
    """Runs one round of ``check_liveness``; returns the names of the commands it applied."""
    applied: list[str] = []
    stop = asyncio.Event()

    async def apply(agent_id: str, command: c.Command) -> None:
        applied.append(type(command).__name__)

    async def latest_then_stop(agent_id: str) -> float | None:
        stop.set()  # this round ends the loop
        return await latest(agent_id)

    await asyncio.wait_for(check_liveness(liveness, apply, 0.01, stop, latest_then_stop), 10)
    return applied


async def test_a_silent_agent_whose_bucket_holds_a_newer_heartbeat_is_not_lost(liveness: Liveness,
                                                                             clock: Clock) -> None:
    """The watch fell behind (a NATS restart stalls it for seconds) while the agent beat on: before, the agent
    was declared lost and its sessions ended."""
    liveness.status("a1", AgentStatus.ALIVE)
    liveness.heartbeat("a1", clock.wall)
    clock.advance(6)
    newer = clock.wall - 0.5

    async def bucket(agent_id: str) -> float | None:
        return newer

    assert await _check_once(liveness, bucket) == []
    assert liveness.due() == [] and not liveness.newer("a1", newer)  # seen now


async def test_a_silent_agent_is_not_judged_while_its_bucket_cannot_be_read(liveness: Liveness, clock: Clock) -> None:
    liveness.status("a1", AgentStatus.ALIVE)
    liveness.heartbeat("a1", clock.wall)
    clock.advance(6)

    async def unreachable(agent_id: str) -> float | None:
        raise TimeoutError("nats: timeout")

    assert await _check_once(liveness, unreachable) == []
    assert names(liveness.due()) == [("a1", "MarkAgentLost")]  # judged at the next check


async def test_a_silent_agent_the_bucket_confirms_is_lost(liveness: Liveness, clock: Clock) -> None:
    liveness.status("a1", AgentStatus.ALIVE)
    last = clock.wall
    liveness.heartbeat("a1", last)
    clock.advance(6)

    async def same(agent_id: str) -> float | None:
        return last

    assert await _check_once(liveness, same) == ["MarkAgentLost"]


async def test_the_latest_heartbeat_is_read_from_the_bucket(js: JetStreamContext) -> None:
    kv = await heartbeat_bucket(js)
    await kv.put("a1", msgspec.json.encode(AgentHeartbeat(agent_id="a1", sent_at=123.5)))
    await kv.put("a2", msgspec.json.encode(AgentHeartbeat(agent_id="a1", sent_at=99.0)))  # someone else's
    await kv.put("a3", b"not a heartbeat")
    assert await latest_heartbeat(kv, "a1") == 123.5
    assert [await latest_heartbeat(kv, key) for key in ("a2", "a3", "a4")] == [None, None, None]


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Liveness(timeout=0)


NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "reason"),
    [("user-requested", Reason.USER_REQUESTED), ("failed-to-start", Reason.FAILED_TO_START),
     ("oom-killed", Reason.OOM_KILLED), ("gremlins", Reason.SELF_TERMINATED), ("", Reason.SELF_TERMINATED)],
)
def test_exit_reasons_map_to_the_closed_vocabulary(text: str, reason: Reason) -> None:
    assert reason_of(text) is reason
    report = KernelExitedReport(agent_id="a", observed_at=NOW, kernel_id="k", session_id="s", exit_code=1, reason=text)
    assert command_for(report) == c.MarkKernelExited(kernel_id="k", exit_code=1, reason=reason)


def test_reports_map_to_commands() -> None:
    base = {"agent_id": "a", "observed_at": NOW, "kernel_id": "k", "session_id": "s"}
    assert command_for(KernelPullingReport(**base)) == c.MarkKernelPreparing(kernel_id="k")
    assert command_for(KernelRunningReport(container_id="cid", **base)) == c.MarkKernelStarted(kernel_id="k", container_id="cid")
    started = AgentStarted(agent_id="a", observed_at=NOW, capacity={"cpu": Decimal(1)}, backend="sim", hostname="h")
    assert command_for(started) == c.RegisterAgent(capacity={"cpu": Decimal(1)}, backend="sim", hostname="h")


def test_the_sender_is_read_from_the_subject() -> None:
    assert agent_of_subject("rp.agent.node-1.kernel_running") == "node-1"
    for subject in ("rp.agent.kernel_running", "rp.other.a.kernel_running", "x.agent.a.b"):
        with pytest.raises(PermanentError):
            agent_of_subject(subject)
