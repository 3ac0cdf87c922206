"""Agent liveness: heartbeats from the KV bucket in, ``AgentLost`` / ``AgentRecovered`` out.

``Liveness`` decides (no I/O, clocks injected); ``watch_heartbeats`` feeds it from
the bucket and ``check_liveness`` applies its decisions through the Agents use case.
Heartbeat age is measured on the controller's own monotonic clock from the moment
it sees a heartbeat, so agents' clocks need not agree with it; only the values
already in the bucket when the controller starts are aged by their ``sent_at``.

The watch can fall behind the bucket: after a NATS restart its consumer is recreated only
seconds later, while the agents beat on. So an agent found silent is judged lost only once the
bucket itself, read then (``latest_heartbeat``), holds no heartbeat newer than the last one seen;
a newer one counts as seen now, and a bucket that cannot be read judges nobody (the next check
does). Before, a NATS restart of half a second had every agent declared lost five seconds later
and their sessions ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Awaitable, Callable

import msgspec
from nats.errors import ConnectionClosedError
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from contracts import commands as c
from contracts.reports import AgentHeartbeat
from contracts.status import AgentStatus
from domain.errors import NotFoundError
from services.common.waiting import first_of
from services.controller.timeouts import KernelActivity

__all__ = ["Latest", "Liveness", "check_liveness", "kernel_activity", "latest_heartbeat", "watch_heartbeats"]

log = logging.getLogger(__name__)

Apply = Callable[[str, c.Command], Awaitable[object]]
Latest = Callable[[str], Awaitable[float | None]]
"""Reads an agent's heartbeat in the bucket now: its ``sent_at`` (``latest_heartbeat``)."""


class Liveness:
    """Tracks each registered agent's status and last heartbeat; says who is lost or back."""

    def __init__(
        self, timeout: float, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"the heartbeat timeout must be positive, got {timeout}")
        self.timeout = timeout
        self._clock = clock
        self._wall = wall
        self._status: dict[str, AgentStatus] = {}
        self._grace: dict[str, float] = {}
        self._beat: dict[str, float] = {}
        self._sent: dict[str, float] = {}

    def status(self, agent_id: str, status: AgentStatus) -> None:
        """Records an agent's status from its events; a newly known agent gets one timeout
        of grace to send its first heartbeat."""
        if agent_id not in self._status:
            self._grace[agent_id] = self._clock()
            self._sent.setdefault(agent_id, self._wall())
        self._status[agent_id] = status

    def heartbeat(self, agent_id: str, sent_at: float, *, live: bool = True) -> None:
        """Records a heartbeat seen now (``live``) or found in the bucket at start (aged by
        its ``sent_at``)."""
        now = self._clock()
        seen = now if live else now - max(0.0, self._wall() - sent_at)
        if seen >= self._beat.get(agent_id, float("-inf")):
            self._beat[agent_id] = seen
            self._sent[agent_id] = sent_at

    def newer(self, agent_id: str, sent_at: float) -> bool:
        """Returns whether a heartbeat sent at ``sent_at`` is newer than the last one seen of ``agent_id``."""
        return sent_at > self._sent.get(agent_id, float("-inf"))

    def due(self) -> list[tuple[str, c.Command]]:
        """Returns the commands due now: ``MarkAgentLost`` for an alive agent silent for longer
        than the timeout, ``MarkAgentRecovered`` for a lost agent with a fresh heartbeat."""
        now = self._clock()
        commands: list[tuple[str, c.Command]] = []
        for agent_id, status in self._status.items():
            beat = self._beat.get(agent_id)
            if status is AgentStatus.ALIVE:
                last = max(beat if beat is not None else float("-inf"), self._grace[agent_id])
                if now - last > self.timeout:
                    commands.append((agent_id, c.MarkAgentLost(last_seen=self._sent[agent_id])))
            elif beat is not None and now - beat <= self.timeout:
                commands.append((agent_id, c.MarkAgentRecovered()))
        return commands

    def applied(self, agent_id: str, command: c.Command) -> None:
        """Records the status a command just applied, ahead of its event."""
        if isinstance(command, c.MarkAgentLost):
            self._status[agent_id] = AgentStatus.LOST
        elif isinstance(command, c.MarkAgentRecovered):
            self._status[agent_id] = AgentStatus.ALIVE

    def forget(self, agent_id: str) -> None:
        """Stops tracking an agent (the store does not know it)."""
        for table in (self._status, self._grace, self._beat, self._sent):
            table.pop(agent_id, None)


WATCH_WAIT = 0.5
"""Seconds the heartbeat watch waits for an update before it looks at ``stop`` again."""


async def watch_heartbeats(kv: KeyValue, liveness: Liveness, stop: asyncio.Event) -> None:
    """Feeds every heartbeat put in the bucket to ``liveness`` until ``stop`` is set, or until it is cancelled.

    Each wait is bounded by ``asyncio.timeout``, not by nats-py's ``updates(timeout=…)``: that is
    ``asyncio.wait_for``, which on Python 3.11 returns an update that arrived as its task was being cancelled
    and drops the cancellation. The watch then went on for ever: the controller, its connection closed for good
    and its other tasks ended, never ended, nor was started again (seen as ``test_follow_closed_bus`` failing
    once in a CI run and 2 times in 81 runs under load)."""
    watcher = await kv.watchall()
    live = False
    try:
        while not stop.is_set():
            try:
                async with asyncio.timeout(WATCH_WAIT):
                    entry = await watcher.updates(timeout=None)
            except TimeoutError:
                continue
            if entry is None:
                live = True  # the values present at start have all been delivered
                continue
            if entry.operation is not None or not entry.value:
                continue  # a delete or purge: no news of the agent
            try:
                beat = msgspec.json.decode(entry.value, type=AgentHeartbeat)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.warning("ignoring a malformed heartbeat under %r: %s", entry.key, exc)
                continue
            if beat.agent_id != entry.key:
                log.warning("ignoring a heartbeat of %r put under %r", beat.agent_id, entry.key)
                continue
            liveness.heartbeat(entry.key, beat.sent_at, live=live)
    finally:
        with contextlib.suppress(ConnectionClosedError):  # closed for good (the controller ends): nothing to stop
            await watcher.stop()


async def latest_heartbeat(kv: KeyValue, agent_id: str) -> float | None:
    """Returns the ``sent_at`` of ``agent_id``'s heartbeat in the bucket now, None when it holds none (or
    not one of that agent); raises the bucket's errors (NATS unreachable, a timeout)."""
    beat = await _read_heartbeat(kv, agent_id)
    return None if beat is None else beat.sent_at


async def kernel_activity(kv: KeyValue, agent_id: str) -> KernelActivity:
    """Returns what ``agent_id``'s heartbeat in the bucket now says of its kernels: those running an execution,
    and when each one's apps last had traffic (nothing when it holds no heartbeat of that agent); raises the
    bucket's errors."""
    beat = await _read_heartbeat(kv, agent_id)
    return KernelActivity() if beat is None else KernelActivity(frozenset(beat.busy_kernels), beat.app_traffic)


async def _read_heartbeat(kv: KeyValue, agent_id: str) -> AgentHeartbeat | None:
    try:
        entry = await kv.get(agent_id)
    except KeyNotFoundError:
        return None
    try:
        beat = msgspec.json.decode(entry.value or b"", type=AgentHeartbeat)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return beat if beat.agent_id == agent_id else None


async def _silent(liveness: Liveness, latest: Latest, agent_id: str) -> bool:
    """Returns whether the bucket confirms that ``agent_id`` sent nothing since the last heartbeat seen;
    a newer heartbeat found there is recorded as seen now."""
    try:
        sent_at = await latest(agent_id)
    except Exception as exc:  # noqa: BLE001 - the controller cannot see the bucket: it judges nobody now
        log.warning("agent %s looks silent, but its heartbeat cannot be read to confirm it (%s: %s); "
                    "judged at the next check", agent_id, type(exc).__name__, exc)
        return False
    if sent_at is not None and liveness.newer(agent_id, sent_at):
        log.info("agent %s beat on while the heartbeat watch was behind; not lost", agent_id)
        liveness.heartbeat(agent_id, sent_at)
        return False
    return True


async def check_liveness(liveness: Liveness, apply: Apply, interval: float, stop: asyncio.Event,
                         latest: Latest) -> None:
    """Applies what ``liveness`` finds due every ``interval`` seconds until ``stop`` is set; an agent
    found silent is marked lost only once ``latest`` (its heartbeat in the bucket) confirms it."""
    while not stop.is_set():
        for agent_id, command in liveness.due():
            if isinstance(command, c.MarkAgentLost) and not await _silent(liveness, latest, agent_id):
                continue
            try:
                await apply(agent_id, command)
            except NotFoundError:
                log.warning("agent %s is not in the event store; no longer watching it", agent_id)
                liveness.forget(agent_id)
                continue
            except Exception as exc:  # noqa: BLE001 - retried at the next check
                log.warning("could not apply %s to agent %s: %s", type(command).__name__, agent_id, exc)
                continue
            log.info("agent %s: %s", agent_id, type(command).__name__)
            liveness.applied(agent_id, command)
        await first_of(stop, timeout=interval)
