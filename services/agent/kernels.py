"""Carries out the kernel events of the agent's own aggregate through a backend.

``agent.kernel_assigned`` → pulling, progress (throttled), creating, running reports;
``agent.kernel_termination_requested`` → exited report. Idempotent: an event
delivered again reports again under the same message ids (deduplicated by the
stream) and never starts a kernel twice or restarts one already terminated.

A start that fails for good (``KernelStartError``), or for any other reason on the
last delivery of the assignment, is reported as exited with ``failed-to-start`` and
its cause as the detail; other errors before the last delivery are retried. Docker (or NATS)
unavailable is never a failed start: the consumer waits it out (``services.common.transient``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import OrderedDict
from collections.abc import Awaitable
from typing import Callable

from contracts.agent import KernelAssigned, KernelReleased, KernelTerminationRequested
from contracts.envelope import Event, utc_now
from contracts.reports import (
    KernelCreatingReport,
    KernelExitedReport,
    KernelPullingReport,
    KernelRunningReport,
    clip_detail,
)
from contracts.status import Reason
from services.agent.backends.base import KernelBackend, KernelLaunch, KernelStartError
from services.agent.devices import DeviceAllocator
from services.agent.progress import ProgressReports
from services.agent.reporting import Reporter, settled, stored
from services.common.transient import unavailable_dependency

__all__ = ["KernelLifecycle"]

log = logging.getLogger(__name__)

REMEMBERED = 10_000
"""How many terminated kernel ids are kept to ignore late assignments."""


def launch_for(kernel: KernelAssigned, allocator: DeviceAllocator | None = None) -> KernelLaunch:
    """Returns the launch of an assigned kernel with the environment every kernel gets and, with
    an ``allocator``, its devices and their variables (``CUDA_VISIBLE_DEVICES``,
    ``BERTH_CUDA_DEVICES``); raises ``DeviceAllocationError`` when they cannot be allocated."""
    env = {
        "BERTH_SESSION_ID": kernel.session_id,
        "BERTH_KERNEL_ID": kernel.kernel_id,
        "BERTH_CLUSTER_ROLE": kernel.cluster_role,
    }
    if allocator is None:
        return KernelLaunch(kernel=kernel, env=env)
    allocation = allocator.allocate(kernel.kernel_id, kernel.slots)
    return KernelLaunch(kernel=kernel, env={**allocator.env(allocation), **env}, devices=allocation.devices)


class KernelLifecycle:
    """Starts and stops kernels on request and reports each step."""

    def __init__(self, backend: KernelBackend, reporter: Reporter, clock: Callable[[], dt.datetime] = utc_now,
                 allocator: DeviceAllocator | None = None) -> None:
        self._backend = backend
        self._allocator = allocator
        self._reporter = reporter
        self._clock = clock
        self._terminated: OrderedDict[str, None] = OrderedDict()
        self._sessions: dict[str, str] = {}
        """Session of each kernel started here (to report a spontaneous exit)."""
        self._started: set[str] = set()
        """Kernels seen running here and not stopped since (what reconciliation expects to find)."""

    async def handle(self, event: Event, *, last_attempt: bool = False) -> None:
        """Carries out a kernel event of the agent's aggregate; other events need nothing.
        ``last_attempt``: the event will not be delivered again, so a start that fails now
        for whatever reason is reported as failed."""
        if isinstance(event, KernelAssigned):
            await self.start(event, last_attempt=last_attempt)
        elif isinstance(event, KernelTerminationRequested):
            await self.stop(event)

    async def start(self, event: KernelAssigned, *, last_attempt: bool = False) -> None:
        """Pulls, creates and starts the assigned kernel, reporting each step; reports a start
        that fails for good as exited with ``failed-to-start`` and its cause."""
        kernel_id, session_id = event.kernel_id, event.session_id
        if kernel_id in self._terminated:
            log.info("kernel %s was terminated already; ignoring its assignment", kernel_id)
            return
        base = {"agent_id": self._reporter.agent_id, "kernel_id": kernel_id, "session_id": session_id}
        self._sessions[kernel_id] = session_id
        container_id = await self._backend.running_container(kernel_id)
        if container_id is None:
            container_id = await self._create(event, base, last_attempt)
            if container_id is None:
                return
        report = KernelRunningReport(observed_at=self._clock(), container_id=container_id, **base)
        await self._reporter.send_kernel(report, kernel_id)
        self._started.add(kernel_id)

    async def _create(self, event: KernelAssigned, base: dict[str, str], last_attempt: bool) -> str | None:
        """Prepares and creates the kernel; returns its container id, None when it failed for good
        (reported). The pulling report goes out before the preparation (a pull that hangs shows as
        PREPARING, and is judged stuck there), the creating one before the creation; neither waits
        for its ack before the next step, and both are stored before the running report."""
        kernel_id = event.kernel_id
        progress = ProgressReports(self._reporter, kernel_id, event.session_id, clock=self._clock)
        acks: list[Awaitable[object]] = []
        try:
            acks.append(await self._reporter.post_kernel(KernelPullingReport(observed_at=self._clock(), **base),
                                                         kernel_id))
            await self._backend.prepare(event, progress)
            await progress.flush()
            creating = KernelCreatingReport(observed_at=self._clock(), **base)
            acks.append(await self._reporter.post_kernel(creating, kernel_id))
            container_id = await self._backend.create(launch_for(event, self._allocator))
        except KernelStartError as exc:
            await settled(acks)
            await self._failed(base, str(exc))
            return None
        except Exception as exc:
            await settled(acks)
            if not last_attempt or unavailable_dependency(exc) is not None:
                raise  # retried; Docker (or NATS) away is waited out, never a failed start
            await self._failed(base, f"{type(exc).__name__}: {exc} (on the last of several attempts)")
            return None
        await stored(acks)  # not stored: raised, and the assignment is delivered again
        return container_id

    async def stop(self, event: KernelTerminationRequested) -> None:
        """Destroys the kernel and reports its exit with the reason of the request."""
        self._started.discard(event.kernel_id)
        exit_code = await self._backend.destroy(event.kernel_id)
        self._forget(event.kernel_id)
        report = KernelExitedReport(
            agent_id=self._reporter.agent_id,
            observed_at=self._clock(),
            kernel_id=event.kernel_id,
            session_id=event.session_id,
            exit_code=exit_code,
            reason=event.reason.value,
        )
        await self._reporter.send_kernel(report, event.kernel_id)

    async def _failed(self, base: dict[str, str], cause: str) -> None:
        """Reports a kernel that could not start, with ``cause`` for people."""
        kernel_id = base["kernel_id"]
        log.warning("kernel %s failed to start: %s", kernel_id, cause)
        self._forget(kernel_id)
        report = KernelExitedReport(observed_at=self._clock(), reason=Reason.FAILED_TO_START.value,
                                    detail=clip_detail(cause), **base)
        await self._reporter.send_kernel(report, kernel_id)

    def recall(self, event: Event) -> None:
        """Learns from the agent's own history which session each assigned kernel belongs to
        (after a restart, so that the exit of an adopted kernel can be reported)."""
        if isinstance(event, KernelAssigned):
            self._sessions[event.kernel_id] = event.session_id
        elif isinstance(event, KernelReleased):
            self._sessions.pop(event.kernel_id, None)

    async def exited(self, kernel_id: str, exit_code: int | None, reason: str, detail: str | None = None) -> None:
        """Reports a kernel that exited by itself (the backend's ``watch`` calls this; ``detail``: why, for
        people, when the reason does not say it all)."""
        session_id = self._sessions.get(kernel_id)
        if session_id is None or kernel_id in self._terminated:
            if self._allocator is not None:
                self._allocator.release(kernel_id)
            return
        self._forget(kernel_id)
        report = KernelExitedReport(
            agent_id=self._reporter.agent_id, observed_at=self._clock(), kernel_id=kernel_id,
            session_id=session_id, exit_code=exit_code, reason=reason, detail=detail,
        )
        await self._reporter.send_kernel(report, kernel_id)

    def assigned(self) -> dict[str, str]:
        """Returns the kernels assigned here and not ended: kernel id → session id."""
        return dict(self._sessions)

    def started(self) -> frozenset[str]:
        """Returns the kernels seen running here and not stopped since."""
        return frozenset(self._started)

    def adopt(self, kernel_id: str) -> None:
        """Records that assigned kernel ``kernel_id`` was found running (after a restart)."""
        if kernel_id in self._sessions:
            self._started.add(kernel_id)

    def vanished(self, kernel_id: str) -> None:
        """Forgets a kernel whose container disappeared (its exit was reported)."""
        self._forget(kernel_id)

    def _forget(self, kernel_id: str) -> None:
        """Forgets a kernel that ended or never started and gives its devices back."""
        if self._allocator is not None:
            self._allocator.release(kernel_id)
        self._sessions.pop(kernel_id, None)
        self._started.discard(kernel_id)
        self._terminated[kernel_id] = None
        while len(self._terminated) > REMEMBERED:
            self._terminated.popitem(last=False)
