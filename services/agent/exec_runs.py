"""The runs streaming through the agent now, bounded, and how each one's stream is ended from outside.

Each run holds a task, a connection to its kernel's runner and up to twice ``exec_stream.RUN_LINE_LIMIT`` of
buffered output, for as long as the runner keeps it going, which a hostile kernel can make forever. So:

- at most ``MAX_RUNS_PER_KERNEL`` runs of one kernel and ``MAX_RUNS`` in all stream at once; one more is
  refused, saying so (``reserve``);
- a run whose client is gone (the gateway's ``cancel``) is ended at once (``end``);
- a run interrupted but still streaming ``INTERRUPT_GRACE`` seconds later (its code ignored the interrupt,
  or the runner did) is ended (``arm_grace``), its client told why on stderr before its ``done``.

An interrupt of a run here (``interrupt``) needs no task and no new connection: once the run was sent, it goes
on the run's own runner connection, after the run (the runner reads that connection's lines in order: it never
answers "not running" for a run it has not read yet), at most ``MAX_INTERRUPTS_PER_RUN`` times; before, it is
kept and the run is never sent (``connected``), as the runner keeps one of a run queued there.

Ending a run's stream cancels its task, which closes the runner connection; the run itself may go on in
the kernel (the runner keeps a run whose client left), as a process does after its terminal closed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from services.agent.runner_socket import encoded, interrupt_request

__all__ = ["INTERRUPT_GRACE", "MAX_INTERRUPTS_PER_RUN", "MAX_RUNS", "MAX_RUNS_PER_KERNEL", "Run", "RunRefused",
           "RunTable"]

MAX_RUNS_PER_KERNEL = 16
"""Runs of one kernel streaming at once (its query runs wait for each other in the runner anyway)."""
MAX_RUNS = 128
"""Runs streaming at once on the agent."""
INTERRUPT_GRACE = 30.0
"""Seconds an interrupted run may go on streaming (a batch run gets SIGINT, SIGTERM, then SIGKILL 2 s apart)."""
MAX_INTERRUPTS_PER_RUN = 64
"""Interrupts sent on one run's connection (each a line the runner may not read: a stopped one); the stream of a
run that outlived them ends ``INTERRUPT_GRACE`` seconds after the first."""


@dataclass(eq=False)
class Run:
    """One run's stream: its kernel, its runner connection once the run is sent there, its task once started, and
    why the agent ended it (``ending``)."""

    run_id: str
    kernel_id: str
    task: asyncio.Task[None] | None = None
    ended: bool = False
    ending: str | None = None
    """What the run's client is told on stderr before the ``done`` (None: nothing, the client is gone)."""
    grace: asyncio.TimerHandle | None = field(default=None, repr=False)
    writer: asyncio.StreamWriter | None = field(default=None, repr=False)
    interrupted: bool = False
    """Interrupted before it was sent: it never is."""
    interrupts: int = 0

    def connected(self, writer: asyncio.StreamWriter) -> bool:
        """Takes ``writer``, the run's runner connection, which the run must be written to next, with no await
        between; False, taking nothing, when the run was interrupted or ended before: it must not be sent."""
        if self.interrupted or self.ended:
            return False
        self.writer = writer
        return True

    def interrupt(self) -> bool:
        """Interrupts the run: on its runner connection once it has one, else before it is sent. False when it had
        ``MAX_INTERRUPTS_PER_RUN`` already (nothing sent)."""
        if self.writer is None:
            self.interrupted = True
            return True
        if self.interrupts >= MAX_INTERRUPTS_PER_RUN:
            return False
        self.interrupts += 1
        self.writer.write(encoded(interrupt_request(self.run_id)))
        return True

    def end(self, note: str | None) -> None:
        """Ends the run's stream (its task is cancelled, now or once started), telling its client ``note``."""
        if self.ended:
            return
        self.ended, self.ending = True, note
        if self.task is not None:
            self.task.cancel()


class RunRefused(ValueError):
    """Raised when a run cannot stream here now; the message says why."""


class RunTable:
    """The runs streaming through the agent, by run id, at most ``per_kernel`` of one kernel and ``total`` in all."""

    def __init__(self, per_kernel: int | None = None, total: int | None = None) -> None:
        self._per_kernel = MAX_RUNS_PER_KERNEL if per_kernel is None else per_kernel
        self._total = MAX_RUNS if total is None else total
        self._runs: dict[str, Run] = {}

    def reserve(self, run_id: str, kernel_id: str) -> Run:
        """Takes and returns a place for run ``run_id`` before its start; RunRefused when there is none (nothing
        taken)."""
        if run_id in self._runs:
            raise RunRefused(f"run {run_id} is already running")
        if len(self._runs) >= self._total:
            raise RunRefused(f"the agent streams {len(self._runs)} runs already (at most {self._total} at once): "
                             "try again once one ended")
        of_kernel = sum(1 for run in self._runs.values() if run.kernel_id == kernel_id)
        if of_kernel >= self._per_kernel:
            raise RunRefused(f"kernel {kernel_id} has {of_kernel} runs streaming already (at most "
                             f"{self._per_kernel} at once): try again once one ended")
        run = self._runs[run_id] = Run(run_id, kernel_id)
        return run

    def attach(self, run_id: str, run: Run, task: asyncio.Task[None]) -> None:
        """Gives ``run`` (reserved as ``run_id``) its streaming task; its place is freed when the task ends."""
        run.task = task
        task.add_done_callback(lambda _: self.release(run_id, run))
        if run.ended:
            task.cancel()

    def release(self, run_id: str, run: Run | None = None) -> None:
        """Frees run ``run_id``'s place (only that of ``run`` when given: a later run may have the id)."""
        current = self._runs.get(run_id)
        if current is None or (run is not None and current is not run):
            return
        del self._runs[run_id]
        if current.grace is not None:
            current.grace.cancel()

    def interrupt(self, run_id: str) -> bool | None:
        """Interrupts run ``run_id`` (``Run.interrupt``): None when it is not streaming here (nothing done), else
        whether the interrupt was taken."""
        run = self._runs.get(run_id)
        return None if run is None else run.interrupt()

    def end(self, run_id: str, note: str | None) -> bool:
        """Ends run ``run_id``'s stream (``Run.end``); returns whether it was streaming here."""
        run = self._runs.get(run_id)
        if run is not None:
            run.end(note)
        return run is not None

    def arm_grace(self, run_id: str, grace: float | None = None) -> None:
        """Ends run ``run_id``'s stream once ``grace`` (``INTERRUPT_GRACE``) seconds passed, unless it ended first."""
        run = self._runs.get(run_id)
        if run is None or run.grace is not None:
            return
        seconds = INTERRUPT_GRACE if grace is None else grace
        note = (f"berth: the run was still going {seconds:g} s after its interrupt: the agent stopped streaming "
                "it (it may still run in the kernel)\n")
        run.grace = asyncio.get_running_loop().call_later(seconds, run.end, note)

    def kernels(self) -> list[str]:
        """Returns the kernels with a run streaming, by id."""
        return sorted({run.kernel_id for run in self._runs.values()})

    def __contains__(self, run_id: str) -> bool:
        return run_id in self._runs

    async def close(self) -> None:
        """Ends every stream without a word to the clients (the runs go on in the kernels) and waits for them."""
        tasks = [run.task for run in self._runs.values() if run.task is not None]
        for run in list(self._runs.values()):
            run.end(None)
        await asyncio.gather(*tasks, return_exceptions=True)
