"""Runs services as child processes (``python -m services.<name>``), each with its own interpreter
and GIL; restarts one that exits, with backoff; stops all on request within a bounded time.

* Output: a child's stdout and stderr, line by line, on ``berth up``'s stderr, each line prefixed
  with the service's name (``relay      | ...``), as docker-compose or honcho show them.
* A child that exits while no stop was asked for is logged with its exit code (or signal) and
  started again after a backoff: 0.5 s, doubled at each exit up to ``max_backoff``, back to 0.5 s
  once a child has run ``STABLE`` seconds.
* Stop: SIGTERM to every child, ``grace`` seconds for them to end, then SIGKILL for the ones still
  running (named in the log, and returned as late).
* Children end with this process, even on its SIGKILL: the parent-death signal
  (``services.common.lifetime``) is SIGKILL, armed from the event loop's thread, which lives as long
  as they should. Each child has a process group of its own, so that a Ctrl-C on the terminal
  reaches ``berth up`` alone, which then stops them in order. ``kill`` ends them at once, from any
  thread (the stop guard's halt).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from typing import Callable, Mapping, Sequence

from services.common.lifetime import die_with_parent
from services.common.waiting import first_of

__all__ = ["Child", "Children", "describe_exit", "module_argv"]

log = logging.getLogger(__name__)

INITIAL_BACKOFF = 0.5
STABLE = 30.0  # seconds a child must have run for its next restart to start from INITIAL_BACKOFF again
KILL_WAIT = 5.0  # seconds to wait for children after SIGKILL
DRAIN = 1.0  # seconds to read what an ended child left in its pipe (a grandchild may hold it open)
LINE_LIMIT = 1024 * 1024

Write = Callable[[str], None]


def module_argv(module: str) -> list[str]:
    """Returns the command line that runs ``python -m <module>`` with this interpreter."""
    return [sys.executable, "-m", module]


def describe_exit(returncode: int) -> str:
    """Returns how a child ended, for people: ``exit code 1`` or ``signal SIGKILL``."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


def _stderr(line: str) -> None:
    stream = sys.stderr
    stream.write(line + "\n")
    stream.flush()


class Child:
    """A service run as a process: ``argv`` with ``env``; ``on_line`` sees each line of its output."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str],
                 on_line: Callable[[str], None] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.on_line = on_line
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        """The PID of the running process, None between two runs."""
        proc = self.proc
        return proc.pid if proc is not None and proc.returncode is None else None

    def signal(self, sig: int) -> None:
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


class Children:
    """Keeps ``children`` running until a stop; see the module's docstring."""

    def __init__(self, children: Sequence[Child], *, grace: float = 10.0, max_backoff: float = 10.0,
                 write: Write | None = None) -> None:
        self.children = list(children)
        self.grace = grace
        self.max_backoff = max_backoff
        self._write = write or _stderr
        self._width = max((len(c.name) for c in self.children), default=0)

    def kill(self) -> None:
        """Sends SIGKILL to every running child; safe from any thread."""
        for child in self.children:
            child.signal(signal.SIGKILL)

    async def run(self, stop: asyncio.Event) -> list[str]:
        """Runs every child until ``stop`` is set (or this is cancelled), then stops them: SIGTERM,
        ``grace`` seconds, SIGKILL. Returns the names of those that had to be killed."""
        tasks = [asyncio.create_task(self._keep_running(c, stop), name=c.name) for c in self.children]
        late: list[str] = []
        try:
            await stop.wait()
        finally:
            stop.set()  # also when cancelled
            for child in self.children:
                child.signal(signal.SIGTERM)
            _, pending = await asyncio.wait(tasks, timeout=self.grace) if tasks else (set(), set())
            for task in pending:
                child = self.children[tasks.index(task)]
                late.append(child.name)
                log.warning("service %s did not stop within %.0fs of the stop request; killing it (pid %s)",
                            child.name, self.grace, child.pid)
                child.signal(signal.SIGKILL)
            if pending:
                _, stuck = await asyncio.wait(pending, timeout=KILL_WAIT)
                for task in stuck:
                    log.error("service %s is still running %.0fs after SIGKILL; leaving it behind", task.get_name(),
                              KILL_WAIT)
                    task.cancel()
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    log.error("supervising %s failed", task.get_name(), exc_info=task.exception())
        return late

    async def _keep_running(self, child: Child, stop: asyncio.Event) -> None:
        backoff = INITIAL_BACKOFF
        while not stop.is_set():
            started = time.monotonic()
            try:
                returncode = await self._run_once(child, stop)
            except OSError as exc:
                log.error("service %s could not start (%s); retrying in %.1fs", child.name, exc, backoff)
            else:
                if stop.is_set():
                    if returncode not in (0, -signal.SIGTERM):
                        log.info("service %s stopped with %s", child.name, describe_exit(returncode))
                    return
                if time.monotonic() - started >= STABLE:
                    backoff = INITIAL_BACKOFF
                log.error("service %s exited with %s; restarting in %.1fs", child.name, describe_exit(returncode),
                          backoff)
            await first_of(stop, timeout=backoff)
            backoff = min(backoff * 2, self.max_backoff)

    async def _run_once(self, child: Child, stop: asyncio.Event) -> int:
        # Started from the event loop's thread (the parent-death signal follows the forking thread).
        proc = await asyncio.create_subprocess_exec(
            *child.argv, env=child.env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, limit=LINE_LIMIT, process_group=0,
            preexec_fn=die_with_parent(signal.SIGKILL))
        child.proc = proc
        child.starts += 1
        if stop.is_set():  # asked to stop while it was being started
            child.signal(signal.SIGTERM)
        log.debug("service %s started (pid %d)", child.name, proc.pid)
        assert proc.stdout is not None
        pump = asyncio.create_task(self._pump(child, proc.stdout), name=f"{child.name} output")
        try:
            returncode = await proc.wait()
        finally:
            await first_of(pump, timeout=DRAIN)
            if not pump.done():
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
        return returncode

    async def _pump(self, child: Child, reader: asyncio.StreamReader) -> None:
        prefix = f"{child.name:<{self._width}} | "
        while True:
            try:
                raw = await reader.readline()
            except ValueError:  # a line longer than LINE_LIMIT: what was read of it is dropped
                raw = await reader.read(LINE_LIMIT)
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip("\r\n")
            self._write(prefix + line)
            if child.on_line is not None:
                try:
                    child.on_line(line)
                except Exception:  # noqa: BLE001 - a faulty callback must not stop the output
                    log.exception("handling a line of %s failed", child.name)
