"""A service's process ends within a bounded time once its main coroutine has ended.

What can hold a process after its work is done: a task that outlives its cancellation (asyncio's
runner then waits for it at close, for ever), or a thread still in a blocking call (the interpreter
joins every non-daemon thread at exit: a ``ThreadPoolExecutor``'s workers, as a ``Facade``'s, are
such). Either held a service after its "stopped" line until its supervisor killed it, leaving no
clue in the log.

* ``end_leftover_tasks``: cancels the tasks left on the loop and waits ``grace`` seconds for them;
  each one still running is logged as an error with its stack.
* ``exit_within``: a watchdog thread; if the process is still there ``seconds`` later, it logs an
  error with every thread's stack (``faulthandler``) and ends the process with status 1.
"""

from __future__ import annotations

import asyncio
import faulthandler
import io
import logging
import os
import sys
import threading

__all__ = ["EXIT_WITHIN", "LEFTOVER_GRACE", "end_leftover_tasks", "exit_within"]

LEFTOVER_GRACE = 2.0
"""Seconds the tasks left at the end have to end once cancelled."""
EXIT_WITHIN = 5.0
"""Seconds a process has to end once its main coroutine has ended."""


async def end_leftover_tasks(log: logging.Logger, grace: float = LEFTOVER_GRACE) -> None:
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
        log.error("task %s did not end within %.0f s of its cancellation:\n%s", task.get_name(), grace,
                  stack.getvalue().rstrip())


def exit_within(log: logging.Logger, seconds: float = EXIT_WITHIN) -> None:
    """Starts a daemon thread that ends the process with status 1, after logging every thread's stack, unless the
    process has ended ``seconds`` from now."""

    def watch() -> None:
        threading.Event().wait(seconds)
        log.error("the process did not end within %.0f s of its main coroutine; its threads:", seconds)
        for handler in logging.getLogger().handlers:
            handler.flush()
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(1)

    threading.Thread(target=watch, name="exit-watch", daemon=True).start()
