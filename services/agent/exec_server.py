"""Serves execution and log requests for the kernels of this agent, over core NATS.

``exec.agent.<id>``: an ``ExecRequest`` is answered with ``ExecAccepted`` (ok, or why not),
then the run goes to the kernel runner's Unix socket and each output chunk is published to
``io.agent.<agent_id>.<kernel_id>.<run_id>`` as an ``ExecChunk`` (seq 0, 1, ...), the last one as
``ExecDone`` (``exec_stream``). A request with ``interrupt`` set interrupts the run ``run_id``; with ``cancel``
too, its client is gone and its stream ends at once; one with ``probe`` set is answered ok when the run
``run_id`` is streaming through this agent (a restarted agent has lost the runs of the one before: their
streams cannot be taken up again).

An interrupt frees what its run holds, so it never waits for a place among the kernel's exec requests (it was
refused when a tenant had 8 slow starts under way: its own Ctrl-C and the gateway's clean-up of runs whose client
left were refused with them). The interrupt of a run streaming here is answered at once, without a task
(``exec_runs``: on the run's own runner connection, or kept until the run's start, which then never happens: the
client gets a line on stderr and exit code 130; such an interrupt was answered "not running" and the run ran to
its end). Only that of a run not streaming here (started before the agent restarted, or its stream ended) needs
a connection to the runner: a task under a bound of its own (``MAX_INTERRUPTS_PER_KERNEL``, ``MAX_INTERRUPTS``).
``logs.agent.<id>``: a ``LogsRequest`` is answered with the end of the kernel's log as UTF-8 text.

The kernels are hostile (their runner can be replaced or stopped): no callback awaits a kernel. Each
request that needs one runs in its own task (``bounded_tasks``: so many per kernel and in all, one more
refused at once), under a deadline (``KERNEL_DEADLINE``, ``LOG_DEADLINE``: below the gateway's 5 s); the
runs streaming are bounded and ended from outside when their client is gone or their interrupt did not
end them (``exec_runs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from contracts.execution import ExecAccepted, ExecRequest, LogsRequest, exec_subject, io_subject, logs_subject
from services.agent.backends.base import KernelBackend
from services.agent.bounded_tasks import BoundedTasks
from services.agent.exec_runs import MAX_INTERRUPTS_PER_RUN, Run, RunRefused, RunTable
from services.agent.exec_stream import RUN_LINE_LIMIT, not_started, stream_run
from services.agent.output_rate import OutputBudgets
from services.agent.runner_lines import RefusedLine, decode_interrupted
from services.agent.runner_socket import abort, interrupt_request, open_runner, send

__all__ = ["ExecServer", "open_runner"]

log = logging.getLogger(__name__)

KERNEL_DEADLINE = 4.0
"""Seconds a request may wait on a kernel's runner in all (connect, send, read its answer)."""
LOG_DEADLINE = 4.0
"""Seconds a log request may take."""
MAX_REQUESTS_PER_KERNEL = 8
"""Runs starting at once for one kernel."""
MAX_REQUESTS = 64
"""Runs starting at once on the agent."""
MAX_INTERRUPTS_PER_KERNEL = 2
"""Interrupts of runs not streaming here (each asked of the runner on a connection of its own) at once for one
kernel."""
MAX_INTERRUPTS = 16
"""Interrupts of runs not streaming here at once on the agent."""
MAX_LOG_REQUESTS_PER_KERNEL = 2
"""Log requests handled at once for one kernel."""
MAX_LOG_REQUESTS = 8
"""Log requests handled at once on the agent (each reads up to a few MiB of a log)."""
_ANSWER_LIMIT = 4096
"""Bytes of a runner's answer to an interrupt."""


class ExecServer:
    """Answers ``exec.agent.<id>`` and ``logs.agent.<id>`` for the kernels of ``backend``."""

    def __init__(self, nc: Nats, agent_id: str, backend: KernelBackend) -> None:
        self._nc = nc
        self._agent_id = agent_id
        self._backend = backend
        self._subs: list[Subscription] = []
        self._runs = RunTable()
        self._requests = BoundedTasks("exec requests", MAX_REQUESTS_PER_KERNEL, MAX_REQUESTS)
        self._interrupts = BoundedTasks("interrupts", MAX_INTERRUPTS_PER_KERNEL, MAX_INTERRUPTS)
        self._budgets = OutputBudgets()
        self._log_requests = BoundedTasks("log requests", MAX_LOG_REQUESTS_PER_KERNEL, MAX_LOG_REQUESTS)

    async def start(self) -> None:
        """Subscribes to the agent's exec and logs subjects."""
        self._subs.append(await self._nc.subscribe(exec_subject(self._agent_id), cb=self._on_exec))
        self._subs.append(await self._nc.subscribe(logs_subject(self._agent_id), cb=self._on_logs))

    def busy_kernels(self) -> list[str]:
        """Returns the kernels with a run streaming through this server now, by id."""
        return self._runs.kernels()

    async def stop(self) -> None:
        """Unsubscribes and stops streaming (the runs themselves go on in the kernels)."""
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        await self._requests.close()
        await self._interrupts.close()
        await self._log_requests.close()
        await self._runs.close()

    async def _reply(self, msg: Msg, ok: bool, error: str | None = None) -> None:
        if msg.reply:
            await self._nc.publish(msg.reply, msgspec.json.encode(ExecAccepted(ok=ok, error=error)))

    async def _on_exec(self, msg: Msg) -> None:
        """Decodes a request and answers it, or starts its work in a task of its own: never awaits a kernel."""
        try:
            request = msgspec.json.decode(msg.data, type=ExecRequest)
            io_subject(self._agent_id, request.kernel_id, request.run_id)
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
            await self._reply(msg, False, f"bad exec request: {exc}")
            return
        path = self._backend.runner_socket(request.kernel_id)
        if path is None or not path.exists():
            await self._reply(msg, False, f"kernel {request.kernel_id} does not run on agent {self._agent_id}")
            return
        if request.probe:
            streaming = request.run_id in self._runs
            await self._reply(msg, streaming, None if streaming else f"run {request.run_id} is not streaming here")
        elif request.interrupt or request.cancel:
            await self._on_interrupt(msg, path, request)
        else:
            try:
                run = self._runs.reserve(request.run_id, request.kernel_id)
            except RunRefused as exc:
                await self._reply(msg, False, str(exc))
                return
            if not await self._spawn(self._requests, msg, request, lambda: self._start_run(msg, path, request, run)):
                self._runs.release(request.run_id, run)

    async def _on_interrupt(self, msg: Msg, path: Path, request: ExecRequest) -> None:
        """Interrupts a run streaming here at once (with ``cancel``, ends its stream too), or asks the runner in a
        task of the interrupts' bound (see the module's docstring)."""
        taken = self._runs.interrupt(request.run_id)
        if request.cancel:
            self._runs.end(request.run_id, None)  # its client is gone: nobody to tell
        elif taken:
            self._runs.arm_grace(request.run_id)
        if taken is None:
            await self._spawn(self._interrupts, msg, request, lambda: self._interrupt(msg, path, request.run_id))
        elif taken:
            await self._reply(msg, True)
        else:
            await self._reply(msg, False, f"run {request.run_id} was interrupted {MAX_INTERRUPTS_PER_RUN} times "
                                          "already: the agent sends it no more")

    async def _spawn(self, bound: BoundedTasks, msg: Msg, request: ExecRequest,
                     work: Callable[[], Coroutine[Any, Any, None]]) -> bool:
        """Starts ``work()`` in a task of ``bound``; answers the request when the bound refuses it (False)."""
        refused = bound.start(request.kernel_id, work, name=f"exec-request-{request.run_id}")
        if refused is not None:
            await self._reply(msg, False, refused)
        return refused is None

    async def _start_run(self, msg: Msg, path: Path, request: ExecRequest, run: Run) -> None:
        """Sends the run to the kernel's runner, starts streaming its output as ``run``, then accepts the request."""
        started = False
        subject = io_subject(self._agent_id, request.kernel_id, request.run_id)
        try:
            try:
                async with asyncio.timeout(KERNEL_DEADLINE):
                    connection = await _send_run(path, request, run)
            except (OSError, TimeoutError) as exc:
                await self._reply(msg, False, f"cannot reach the runner of kernel {request.kernel_id}: {_why(exc)}")
                return
            if connection is None or run.ended:  # interrupted or its client gone first: never sent, or not streamed
                await self._not_streamed(msg, request, run, subject)
                return
            reader, writer = connection
            task = asyncio.create_task(stream_run(self._nc, subject, reader, writer, run,
                                                  self._budgets.for_run(request.kernel_id)),
                                       name=f"exec-{request.run_id}")
            self._runs.attach(request.run_id, run, task)
            started = True
            await self._reply(msg, True)
        finally:
            if not started:
                self._runs.release(request.run_id, run)

    async def _not_streamed(self, msg: Msg, request: ExecRequest, run: Run, subject: str) -> None:
        """Answers the request of a run that will not stream: interrupted before it was sent (accepted, then ended
        as interrupted), or ended first (its client gone: refused)."""
        if run.writer is not None:
            abort(run.writer)
        if run.ended:
            when = "while it started: its runner was told to interrupt it" if run.writer is not None else (
                "before it started: it did not run")
            await self._reply(msg, False, f"run {request.run_id} was cancelled {when}")
            return
        await self._reply(msg, True)
        await not_started(self._nc, subject)

    async def _interrupt(self, msg: Msg, path: Path, run_id: str) -> None:
        """Asks the kernel's runner to interrupt ``run_id`` and answers whether it was running there."""
        try:
            async with asyncio.timeout(KERNEL_DEADLINE):
                reader, writer = await open_runner(path, limit=_ANSWER_LIMIT)
                try:
                    await send(writer, interrupt_request(run_id))
                    answer = await reader.readline()  # ValueError past _ANSWER_LIMIT
                finally:
                    abort(writer)
            if not answer:
                raise ConnectionError("it closed the connection without an answer")
            running = decode_interrupted(answer)
        except RefusedLine as exc:
            await self._reply(msg, False, f"the runner's answer to the interrupt is refused: {exc}")
        except (OSError, TimeoutError, ValueError) as exc:
            await self._reply(msg, False, f"cannot reach the runner: {_why(exc)}")
        else:
            await self._reply(msg, running, None if running else f"run {run_id} is not running")

    async def _on_logs(self, msg: Msg) -> None:
        """Decodes a log request and starts reading the log in a task of its own."""
        try:
            request = msgspec.json.decode(msg.data, type=LogsRequest)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            await self._answer_logs(msg, f"bad logs request: {exc}")
            return
        refused = self._log_requests.start(request.kernel_id, lambda: self._read_logs(msg, request),
                                           name=f"logs-{request.kernel_id}")
        if refused is not None:
            await self._answer_logs(msg, f"berth: {refused}")

    async def _read_logs(self, msg: Msg, request: LogsRequest) -> None:
        """Answers ``request`` with the end of the kernel's log, or why there is none."""
        tail = request.tail if request.tail is not None and request.tail >= 0 else None
        try:
            async with asyncio.timeout(LOG_DEADLINE):
                text = await self._backend.logs(request.kernel_id, tail=tail, limit=self._log_limit())
        except ValueError as exc:  # an id that is no plain token never becomes a path
            text = f"bad logs request: {exc}"
        except TimeoutError:
            text = f"berth: the log of kernel {request.kernel_id} could not be read within {LOG_DEADLINE:g} s"
        except Exception:  # noqa: BLE001 - the cause (an engine's error) is in the agent's log, not the answer
            log.exception("cannot read the log of kernel %s", request.kernel_id)
            text = f"berth: the log of kernel {request.kernel_id} cannot be read now (the agent's log says why)"
        await self._answer_logs(msg, text)

    def _log_limit(self) -> int:
        return max(1024, self._nc.max_payload - 4096)

    async def _answer_logs(self, msg: Msg, text: str) -> None:
        data = text.encode()[-self._log_limit():]
        if msg.reply:
            await self._nc.publish(msg.reply, data)


async def _send_run(path: Path, request: ExecRequest, run: Run) -> tuple[asyncio.StreamReader,
                                                                         asyncio.StreamWriter] | None:
    """Connects to the kernel's runner and sends it the run, ``run``'s connection from then on (``Run.connected``);
    None, sending nothing, when the run was interrupted or ended meanwhile."""
    reader, writer = await open_runner(path, limit=RUN_LINE_LIMIT)
    if not run.connected(writer):
        abort(writer)
        return None
    try:
        await send(writer, {"op": "run", "run_id": request.run_id, "mode": request.mode.value, "code": request.code,
                            "stdin": request.stdin, "argv": request.argv, "detach": request.detach})
    except BaseException:
        abort(writer)
        raise
    return reader, writer


def _why(exc: BaseException) -> str:
    """Says why a kernel's runner could not be reached."""
    if isinstance(exc, TimeoutError):
        return f"it did not answer within {KERNEL_DEADLINE:g} s"
    if not isinstance(exc, OSError):  # a line past the reader's limit
        return "its answer was too long"
    return str(exc) or type(exc).__name__
