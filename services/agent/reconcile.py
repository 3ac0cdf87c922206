"""Reconciliation: the agent compares the containers its backend runs with the kernels assigned
to it, on start and every ``BERTH_RECONCILE_INTERVAL`` seconds, and corrects the difference.

* An **orphan** — a running container labelled as this agent's whose kernel is not assigned here
  (released, terminated, or never assigned) — is destroyed and reported
  (``OrphanDestroyedReport``; the controller records ``agent.orphan_container_destroyed``).
* A **vanished** kernel — one seen running here whose container is gone (removed behind the
  agent's back, without an exit the backend noticed) — is reported exited with reason
  ``vanished`` (the controller records ``KernelTerminated``, and the session ends as for any exit).
  After a restart, a kernel assigned here but not found running may also be one whose start is
  still to come (its assignment not yet consumed): such kernels are judged at the *next* pass
  (by then the exit watcher has reported containers that exited while the agent was down and
  pending assignments were carried out), and the domain applies a ``vanished`` exit only to a
  kernel its session knows RUNNING, so a kernel still starting is never ended by it.

* A pass that found suspects is followed by the next one ``SUSPECTS_AGAIN`` (10 s) later, not a whole
  interval later.

* After each pass, what ended kernels left on the node (the Docker backend keeps an ended kernel's log
  and exit in its directory) is removed once kept for ``BERTH_KERNEL_RETENTION`` seconds (a week):
  ``KernelBackend.sweep``.

``compare`` is the pure part (table-tested); ``Reconciler`` does the I/O. Reports carry
deduplicating message ids (``<agent>:<kernel>:kernel_vanished``, ``…:kernel_vanished_at_start``,
``<agent>:<kernel>:orphan:<container>``), and the controller's handling is idempotent (a second
exit of an ended kernel changes nothing), so a pass repeated after a crash records nothing twice.
An orphan is destroyed through the backend by its kernel id (Docker: the container named
``berth-<kernel_id>``, the backend's naming).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Set

import msgspec

from contracts.envelope import utc_now
from contracts.reports import KernelExitedReport, OrphanDestroyedReport
from contracts.status import Reason
from services.agent.backends.base import KernelBackend
from services.agent.kernels import KernelLifecycle
from services.agent.reporting import Reporter
from services.common.waiting import first_of

__all__ = ["Corrections", "Reconciler", "compare", "reconcile_periodically"]

log = logging.getLogger(__name__)


class Corrections(msgspec.Struct, frozen=True, kw_only=True):
    """What one pass found, each list sorted by kernel id."""

    orphans: list[tuple[str, str]] = []
    """(kernel id, container id) of the running containers no assigned kernel explains."""
    vanished: list[tuple[str, str]] = []
    """(kernel id, session id) of the kernels expected running whose container is gone."""
    adopted: list[str] = []
    """Assigned kernels found running that the agent had not seen start (after a restart)."""
    suspects: list[str] = []
    """Assigned kernels neither running nor known started: judged at the next pass."""


def compare(assigned: Mapping[str, str], expected: Set[str], running: Mapping[str, str]) -> Corrections:
    """Returns the corrections due: ``assigned`` maps the kernels assigned here to their sessions,
    ``expected`` holds the kernels that should have a running container, ``running`` maps the
    kernels of the running containers to their container ids."""
    return Corrections(
        orphans=sorted((kernel, container) for kernel, container in running.items() if kernel not in assigned),
        vanished=sorted((kernel, assigned[kernel]) for kernel in expected if kernel in assigned and kernel not in running),
        adopted=sorted(kernel for kernel in assigned if kernel in running and kernel not in expected),
        suspects=sorted(kernel for kernel in assigned if kernel not in running and kernel not in expected),
    )


class Reconciler:
    """Runs reconciliation passes for one agent."""

    def __init__(self, backend: KernelBackend, lifecycle: KernelLifecycle, reporter: Reporter,
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        self._backend = backend
        self._lifecycle = lifecycle
        self._reporter = reporter
        self._clock = clock
        self._suspects: frozenset[str] | None = None
        """Kernels to judge at the next pass; None before the first pass."""

    async def once(self) -> Corrections:
        """Runs one pass: destroys and reports the orphans, reports the vanished kernels."""
        started = self._lifecycle.started()  # before listing: a kernel started later is not expected yet
        running = await self._backend.list_running()
        assigned = self._lifecycle.assigned()  # after listing: a container being created is assigned already
        expected = (started & self._lifecycle.started()) | (self._suspects or frozenset())
        found = compare(assigned, expected, running)
        first = self._suspects is None
        self._suspects = frozenset(found.suspects) if first else frozenset()
        for kernel_id in found.adopted:
            self._lifecycle.adopt(kernel_id)
        for kernel_id, container_id in found.orphans:
            await self._destroy_orphan(kernel_id, container_id)
        for kernel_id, session_id in found.vanished:
            await self._report_vanished(kernel_id, session_id, suspect=kernel_id not in started)
        return found

    async def sweep(self) -> list[str]:
        """Removes what ended kernels left on the node past the backend's retention (``KernelBackend.sweep``)."""
        return await self._backend.sweep()

    async def _destroy_orphan(self, kernel_id: str, container_id: str) -> None:
        log.warning("destroying orphan container %s (kernel %s is not assigned to this agent)", container_id, kernel_id)
        exit_code = await self._backend.destroy(kernel_id)
        report = OrphanDestroyedReport(agent_id=self._reporter.agent_id, observed_at=self._clock(),
                                       kernel_id=kernel_id, container_id=container_id, exit_code=exit_code)
        await self._reporter.send(report, f"{self._reporter.agent_id}:{kernel_id}:orphan:{container_id}")

    async def _report_vanished(self, kernel_id: str, session_id: str, *, suspect: bool) -> None:
        """Reports ``kernel_id`` exited with ``vanished``; a ``suspect`` (not found after a restart)
        is reported under its own message id and not forgotten: its start may still come."""
        log.warning("kernel %s of session %s has no container: reporting it vanished", kernel_id, session_id)
        report = KernelExitedReport(agent_id=self._reporter.agent_id, observed_at=self._clock(), kernel_id=kernel_id,
                                    session_id=session_id, reason=Reason.VANISHED.value)
        kind = "kernel_vanished_at_start" if suspect else "kernel_vanished"
        await self._reporter.send(report, f"{self._reporter.agent_id}:{kernel_id}:{kind}")
        if not suspect:
            self._lifecycle.vanished(kernel_id)


SUSPECTS_AGAIN = 10.0
"""Seconds after a pass that found suspects (after a restart) until the next one judges them, when the
interval is longer: a kernel whose process or container is gone (the process backend's runners end with
the agent) is reported vanished then, not one whole interval later, while its session looked RUNNING."""


async def reconcile_periodically(reconciler: Reconciler, interval: float, stop: asyncio.Event) -> None:
    """Runs a pass, then a sweep of what ended kernels left, now and every ``interval`` seconds until ``stop``
    is set (``SUSPECTS_AGAIN`` after a pass that found suspects); a failed pass (the engine or NATS away) is
    logged and tried again at the next one."""
    while not stop.is_set():
        wait = interval
        try:
            found = await reconciler.once()
            swept = await reconciler.sweep()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the next pass tries again
            log.warning("reconciliation failed: %s; retrying in %.0f s", exc, interval)
        else:
            if found.orphans or found.vanished:
                log.info("reconciliation: %d orphan(s) destroyed, %d vanished kernel(s) reported",
                         len(found.orphans), len(found.vanished))
            if swept:
                log.info("removed what %d kernel(s) left on this node, ended longer than the retention ago", len(swept))
            if found.suspects:
                wait = min(interval, SUSPECTS_AGAIN)
        await first_of(stop, timeout=wait)
