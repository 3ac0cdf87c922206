"""Code execution in a session's main kernel (subscription ``execute``) and its log (``sessionLogs``).

``interruptExecution`` interrupts a run of the caller's session as Ctrl-C would (its stream goes
on to ``done``, so the client sees the run's ``KeyboardInterrupt``); a stream closed before its
``done`` interrupts its run too, and tells the agent to end the run's stream (``cancel``).

Interactive I/O is not an event (DESIGN.md §7): the gateway subscribes to
``io.agent.<agent_id>.<kernel_id>.<run_id>`` first, on its connection for runs' output, then asks the kernel's agent
on ``exec.agent.<agent_id>`` on its connection for requests (``Resources.output_nats``: output floods never delay
requests); the agent streams ``ExecChunk``s and one ``ExecDone``. Only the
outcome is recorded, as ``session.execution_finished`` (run id, exit code, duration, code
digest, the caller as actor), off the critical path: the record is handed to the gateway's
``ExecutionAudit`` (``services/gateway/execution_audit.py``) and ``done`` goes out without waiting for the store.
Whatever ends the stream, its subscription is ended and a run whose client went away is interrupted by
``run_end.end_run``, in a task of its own that a cancellation of the stream does not cut short.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

import msgspec
import nats.errors
import strawberry
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from contracts import commands as c
from contracts.execution import (
    MAX_EXEC_INPUT,
    ExecDone,
    ExecMode,
    ExecRequest,
    LogsRequest,
    exec_input_size,
    io_subject,
    logs_subject,
)
from contracts.status import SessionStatus
from domain.session import SessionState
from services.application.context import make_context
from services.gateway.context import Info, caller
from services.gateway.errors import BAD_INPUT, CONFLICT, UNAVAILABLE, GatewayError
from services.gateway.execution.agent_calls import AGENT_TIMEOUT, interruption, request_agent, silent_agent
from services.gateway.execution.run_end import end_run
from services.gateway.execution.run_output import RunOutput, read_run, subscribe_run
from services.gateway.limits import ARGV, RUN_ID, checked_choice, checked_value
from services.gateway.sessions.main_kernel import main_kernel, owned_session_ref, running_main_kernel
from services.gateway.sessions.refs import checked_ref
from services.gateway.subscription_guard import subscription_slot

__all__ = ["ExecItem", "execute", "interrupt_execution", "session_logs"]

SILENCE = 10.0
"""Seconds a run may stay silent before the gateway asks its agent whether it still streams it."""
LAST_WORD = 1.0
"""Seconds the gateway waits, once the agent said it no longer streams a run, for what it sent before."""


@strawberry.type(description="One item of an execution: an output chunk, or `done` with the exit code.")
class ExecItem:
    run_id: str
    kind: str = strawberry.field(
        description="`stdout`, `stderr` or `done`; first `started` when asked for (`announce`).")
    data: str | None = None
    exit_code: int | None = None
    duration_ms: int | None = None
    truncated: bool | None = strawberry.field(
        default=None, description="On `done`: some output was dropped (this client read it more slowly than the run "
                                  "wrote it; a line on stderr says where and how much).")


def _checked_mode(mode: str) -> ExecMode:
    try:
        return ExecMode(checked_choice("mode", mode).lower())
    except ValueError:
        raise GatewayError(BAD_INPUT, f"unknown mode {mode!r} (known: query, batch)") from None


async def execute(
    info: Info, session_id: str, code: str, mode: str = "query", stdin: str | None = None, announce: bool = False,
    argv: list[str] | None = None, detach: bool = False,
) -> AsyncGenerator[ExecItem, None]:
    """Runs ``code`` in the session's main kernel and streams its output, then ``done``; with
    ``announce``, first an item ``started`` once the agent accepted the run (its ``runId``, to
    interrupt it before it wrote anything). ``argv``: the run's ``sys.argv`` (query mode). ``detach`` (batch
    mode): the command outlives the run (a service, for ``berth app``), its output going to the kernel's log."""
    exec_mode = _checked_mode(mode)
    if argv is not None:
        checked_value(ARGV, argv)
        if exec_mode is not ExecMode.QUERY:
            raise GatewayError(BAD_INPUT, "argv is for Python (mode query); a shell command holds its arguments")
    if detach and (exec_mode is not ExecMode.BATCH or stdin is not None):
        raise GatewayError(BAD_INPUT, "detach is for a shell command (mode batch) without stdin: it runs on after "
                                      "the run, reading nothing")
    if exec_input_size(code, stdin, argv or ()) > MAX_EXEC_INPUT:
        raise GatewayError(BAD_INPUT, f"code, stdin and argv must not exceed {MAX_EXEC_INPUT} bytes together")
    state, kernel_id, agent_id = await running_main_kernel(info, session_id)
    nc = await info.context.resources.nats()
    output_nc = await info.context.resources.output_nats()  # never the requests' (``Resources.output_nats``)
    run_id = uuid.uuid4().hex
    request = ExecRequest(run_id=run_id, kernel_id=kernel_id, mode=exec_mode, code=code, stdin=stdin, argv=argv,
                          detach=detach)
    async with subscription_slot(info):  # one of the caller's concurrent subscriptions while it runs
        sub = await subscribe_run(output_nc, io_subject(agent_id, kernel_id, run_id))
        finished = False  # or nothing to interrupt: the run ended, or never started
        try:
            refusal = await _ask_agent(nc, agent_id, request)
            if refusal is not None:
                finished = True
                raise GatewayError(UNAVAILABLE, f"agent {agent_id} refused the run: {refusal}")
            if announce:
                yield ExecItem(run_id=run_id, kind="started")
            output = RunOutput()
            reader = asyncio.create_task(read_run(_messages(sub, lambda: _lost(info, nc, state.id, request, agent_id)),
                                                  output))
            try:
                async for item in output:
                    if isinstance(item, ExecDone):
                        finished = True
                        await _audit(info, state, request, item)
                        yield ExecItem(run_id=run_id, kind="done", exit_code=item.exit_code,
                                       duration_ms=item.duration_ms, truncated=output.truncated)
                        return
                    yield ExecItem(run_id=run_id, kind=item.stream, data=item.data)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        finally:
            end_run(nc, sub, agent_id, kernel_id, run_id, interrupt=not finished)


async def _messages(sub: Subscription, lost: Callable[[], Awaitable[bool]]) -> AsyncIterator[Msg]:
    """Yields the messages of a run's subscription. After ``SILENCE`` seconds without one, asks ``lost()``
    whether the run is gone; when it is, waits ``LAST_WORD`` seconds more for what the agent sent before it
    answered (a run that ended then), then raises UNAVAILABLE: a stream that can no longer end is never
    waited on for good (it was, when the agent restarted during a run: the client hung)."""
    gone = False
    while True:
        try:
            yield await sub.next_msg(timeout=LAST_WORD if gone else SILENCE)
        except nats.errors.TimeoutError:
            if gone:
                raise GatewayError(UNAVAILABLE, "the run was lost: its agent restarted while it ran, so its output "
                                                "from then on and its exit status cannot reach you (the code may "
                                                "still be running in the session)") from None
            gone = await lost()


async def _lost(info: Info, nc: Nats, session_id: str, request: ExecRequest, agent_id: str) -> bool:
    """Returns whether the run of ``request`` is gone: its agent says it is not streaming it (restarted since).
    An agent that does not answer may come back; the session's end (agent lost for good, terminated) ends
    the stream with CONFLICT."""
    probe = ExecRequest(run_id=request.run_id, kernel_id=request.kernel_id, code="", probe=True)
    try:
        return not (await request_agent(nc, agent_id, probe)).ok
    except GatewayError:  # the agent did not answer
        state = await owned_session_ref(info, session_id)
        if state.status is not SessionStatus.RUNNING:
            raise GatewayError(CONFLICT, f"session {state.id} is {state.status.value}: the run ended with it") from None
        return False


async def _ask_agent(nc: Nats, agent_id: str, request: ExecRequest) -> str | None:
    """Asks the agent to start the run; returns why it refused (nothing runs), None when it accepted; UNAVAILABLE
    when it did not answer (the run may have started, its answer lost: it is interrupted then)."""
    accepted = await request_agent(nc, agent_id, request)
    return None if accepted.ok else (accepted.error or "refused")


async def interrupt_execution(info: Info, session_id: str, run_id: str) -> bool:
    """Interrupts run ``run_id`` in the main kernel of one of your RUNNING sessions (``sessionId``: its
    id, a unique id prefix or its name), as Ctrl-C would: Python code gets ``KeyboardInterrupt``, a
    shell command SIGINT. Its ``execute`` stream goes on to ``done``. Returns false when that run is
    not running (it ended already, or never ran in this session)."""
    checked_ref(session_id)
    checked_value(RUN_ID, run_id)
    _, kernel_id, agent_id = await running_main_kernel(info, session_id)
    nc = await info.context.resources.nats()
    return (await request_agent(nc, agent_id, interruption(kernel_id, run_id))).ok


async def _audit(info: Info, state: SessionState, request: ExecRequest, done: ExecDone) -> None:
    """Hands the run's record to the audit (written after ``done`` went out, never dropped)."""
    command = c.RecordExecution(
        run_id=request.run_id, kernel_id=request.kernel_id, mode=request.mode.value, exit_code=done.exit_code,
        duration_ms=done.duration_ms, code_digest="sha256:" + hashlib.sha256(request.code.encode()).hexdigest(),
    )
    await info.context.resources.execution_audit.submit(state.id, command, make_context(caller(info).access_key),
                                                        seen_version=state.version)


async def session_logs(info: Info, session_id: str) -> str:
    """Returns the log of the session's main kernel, as its agent keeps it."""
    state = await owned_session_ref(info, session_id)
    kernel_id, agent_id = main_kernel(state)
    nc = await info.context.resources.nats()
    try:
        reply = await nc.request(logs_subject(agent_id), msgspec.json.encode(LogsRequest(kernel_id=kernel_id)),
                                 timeout=AGENT_TIMEOUT)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        raise GatewayError(UNAVAILABLE, silent_agent(agent_id)) from None
    return reply.data.decode("utf-8", errors="replace")
