"""Ends ``berth up`` within a bounded time, whatever is stuck.

The first SIGINT or SIGTERM asks the services to stop (``supervise`` gives them a grace period,
then cancels them) and starts a hard deadline. A second signal, or the deadline passing, logs what
is still running (service tasks, and each thread's innermost frames), runs the *halt* callbacks
(stop the embedded servers at once, remove the instance file) and ends the process with
``os._exit``: threads blocked in a library call (the event loop's executor threads are not
daemons; the interpreter would wait for them at exit) cannot hold it. The signals are read from
the interpreter's wakeup fd by a thread of its own, so this works even while the main thread or
the event loop is blocked.

``run_loop`` runs the main coroutine like ``asyncio.run`` but never waits for the executor's
threads; ``exit_if_threads_stuck`` (``services.common.process_exit``) ends the process once everything else
has stopped if threads are still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import signal
import threading
import time
from typing import Any, Callable, Coroutine, TypeVar

from services.common.process_exit import describe_threads, end_leftover_tasks, flush_logs

__all__ = ["StopGuard", "run_loop"]

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)
HALT_TIMEOUT = 5.0  # the most the halt callbacks (and the last log lines) may take
T = TypeVar("T")


class StopGuard:
    """SIGINT/SIGTERM handling with a hard deadline. ``install`` it in the main thread before
    starting anything; ``add_halt`` what must be stopped at once when the process is ended."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._halts: list[Callable[[], None]] = []
        self._request: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._requested = False
        self._starting = True
        self._lock = threading.Lock()

    def install(self) -> None:
        """Takes over SIGINT and SIGTERM (main thread only). Until ``serve`` is called, a signal
        also raises KeyboardInterrupt in the main thread, which aborts the start."""
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        for sig in SIGNALS:
            signal.signal(sig, self._on_signal)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, args=(read_fd,), name="stop-guard", daemon=True).start()

    def add_halt(self, halt: Callable[[], None]) -> None:
        """Registers a callback run (in another thread, at most HALT_TIMEOUT s) before a forced exit."""
        self._halts.append(halt)

    def serve(self, request: Callable[[], None] | None, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Registers how to ask for a graceful stop (thread-safe), and the loop whose unfinished
        tasks are named when the process is ended; calls ``request`` at once when a stop was
        already asked for."""
        with self._lock:
            self._request, self._loop, self._starting = request, loop, False
            requested = self._requested
        if requested and request is not None:
            request()

    def _on_signal(self, signum: int, frame: object) -> None:  # noqa: ARG002 - handler signature
        if self._starting:
            raise KeyboardInterrupt

    def _watch(self, fd: int) -> None:
        deadline: float | None = None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            readable, _, _ = select.select([fd], [], [], timeout)
            if not readable:
                self._end(f"Berth did not stop within {self.deadline:.0f}s of the stop request; ending it", 1)
            data = os.read(fd, 64)
            if not data:
                return
            for signum in data:
                if signum not in SIGNALS:
                    continue
                name = signal.Signals(signum).name
                if deadline is not None:
                    self._end(f"{name} again: ending Berth at once", 128 + signum)
                deadline = time.monotonic() + self.deadline
                log.warning("%s: stopping every service (at most %.0fs; send it again to end at once)",
                            name, self.deadline)
                self._request_stop()

    def _request_stop(self) -> None:
        with self._lock:
            self._requested = True
            request = self._request
        if request is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                request()

    def _end(self, reason: str, code: int) -> None:
        # A stuck main thread may hold a lock the report needs (a logging handler's): report and
        # halt from another thread, and end the process after HALT_TIMEOUT in any case.
        worker = threading.Thread(target=self._report_and_halt, args=(reason,), name="stop-halt", daemon=True)
        worker.start()
        worker.join(HALT_TIMEOUT)
        os._exit(code)

    def _report_and_halt(self, reason: str) -> None:
        log.error("%s. Services still running: %s. Threads: %s", reason, ", ".join(self._unfinished()) or "none",
                  describe_threads())
        flush_logs()
        logging.disable(logging.ERROR)  # from here on, the services' complaints about the servers are noise
        for halt in self._halts:
            try:
                halt()
            except Exception:  # noqa: BLE001 - the other halts must still run
                log.critical("halting failed", exc_info=True)
        flush_logs()

    def _unfinished(self) -> list[str]:
        loop = self._loop
        if loop is None:
            return []
        try:
            tasks = list(asyncio.all_tasks(loop))
        except RuntimeError:  # the loop's task set changed meanwhile
            return ["?"]
        return sorted(t.get_name() for t in tasks if not t.done() and not t.get_name().startswith("Task-"))


def run_loop(main: Callable[[asyncio.Event], Coroutine[Any, Any, T]], guard: StopGuard, *,
             cancel_timeout: float = 2.0) -> T:
    """Runs ``main(stop)`` on a new event loop, ``stop`` being set on the first SIGINT/SIGTERM;
    then cancels the tasks left (waiting at most ``cancel_timeout`` seconds for them) and closes
    the loop without waiting for the threads of its default executor (one that outlives its cancellation is
    logged with its stack and left behind)."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    asyncio.set_event_loop(loop)
    guard.serve(lambda: loop.call_soon_threadsafe(stop.set), loop)
    try:
        return loop.run_until_complete(main(stop))
    finally:
        try:
            loop.run_until_complete(end_leftover_tasks(log, cancel_timeout))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            guard.serve(None)
            asyncio.set_event_loop(None)
            loop.close()  # shuts the default executor down with wait=False
