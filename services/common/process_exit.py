"""A process ends within a bounded time once its work is done, and says what held it.

What can hold a process after its work is done: a task that outlives its cancellation (asyncio's runner then waits
for it at close, for ever), or a thread still in a blocking call (the interpreter joins every non-daemon thread at
exit: a ``ThreadPoolExecutor``'s workers, as a ``Facade``'s, and the default executor's, are such). Either held a
service after its "stopped" line until its supervisor killed it, leaving no clue in the log.

* ``end_leftover_tasks``: cancels the tasks left on the loop and waits ``grace`` seconds for them; each one still
  running is logged as an error with its stack.
* ``exit_within``: a watchdog thread (a service's, ``entrypoint``); if the process is still there ``seconds`` later,
  it logs where its threads are and ends the process with status 1.
* ``exit_if_threads_stuck``: the same once everything else has stopped, waiting for the threads instead (``berth
  up``'s supervisor).
* ``describe_threads``: the threads that are not daemons with their innermost frames; ``flush_logs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import sys
import threading
import time
import traceback
from pathlib import Path

__all__ = ["EXIT_WITHIN", "LEFTOVER_GRACE", "describe_threads", "end_leftover_tasks", "exit_if_threads_stuck",
           "exit_within", "flush_logs"]

log = logging.getLogger(__name__)

LEFTOVER_GRACE = 2.0
"""Seconds the tasks left at the end have to end once cancelled."""
EXIT_WITHIN = 5.0
"""Seconds a service's process has to end once its main coroutine has ended."""


async def end_leftover_tasks(logger: logging.Logger, grace: float = LEFTOVER_GRACE) -> None:
    """Cancels every task of the running loop but the current one; logs, with its stack, each one that has not
    ended ``grace`` seconds later (the runner would wait for it for ever)."""
    current = asyncio.current_task()
    left = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    if not left:
        return
    for task in left:
        task.cancel()
    _, pending = await asyncio.wait(left, timeout=grace)
    for task in pending:
        stack = io.StringIO()
        task.print_stack(file=stack)
        logger.error("task %s did not end within %.0f s of its cancellation:\n%s", task.get_name(), grace,
                     stack.getvalue().rstrip())


def exit_within(logger: logging.Logger, seconds: float = EXIT_WITHIN) -> None:
    """Starts a daemon thread that ends the process with status 1, after logging where its threads are, unless the
    process has ended ``seconds`` from now."""

    def watch() -> None:
        threading.Event().wait(seconds)
        logger.error("the process did not end within %.0f s of its main coroutine; not waiting for its threads: %s",
                     seconds, describe_threads())
        flush_logs()
        os._exit(1)

    threading.Thread(target=watch, name="exit-watch", daemon=True).start()


def exit_if_threads_stuck(timeout: float, code: int = 1) -> None:
    """Waits up to ``timeout`` seconds for the threads that are not daemons; when some still run, logs where they
    are and ends the process with ``os._exit(code)``, since the interpreter would wait for them at exit, possibly
    forever."""
    deadline = time.monotonic() + timeout
    for thread in _others():
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in _others()):
        log.error("threads still running after the stop, not waiting for them: %s", describe_threads())
        flush_logs()
        os._exit(code)


def describe_threads() -> str:
    """Names the threads that are not daemons (the main thread included) with their innermost frames."""
    threads = {t.ident: t for t in threading.enumerate() if not t.daemon}
    parts = []
    for ident, frame in sys._current_frames().items():
        thread = threads.get(ident)
        if thread is None:
            continue
        frames = traceback.extract_stack(frame)[-3:]
        where = " < ".join(f"{f.name} ({Path(f.filename).name}:{f.lineno})" for f in reversed(frames))
        parts.append(f"{thread.name}: {where}")
    return "; ".join(parts)


def flush_logs() -> None:
    """Flushes the root logger's handlers and the standard streams (before an ``os._exit``)."""
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _others() -> list[threading.Thread]:
    current = threading.current_thread()
    return [t for t in threading.enumerate() if t is not current and not t.daemon and t.is_alive()]
