"""``berth exec SESSION CODE`` and ``berth logs SESSION``, and the output streaming ``berth run`` shares."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import Any

import click

from contracts.execution import MAX_EXEC_INPUT, exec_input_size, output_dropped_note
from services.cli import queries as q
from services.cli.connection import connect_client
from services.cli.logs_follow import follow_logs
from services.cli.running import on_signals, run_async
from services.cli.sessions_common import ended_under
from services.common.backlog import Backlog
from services.sdk.client import BerthAPIError, BerthClient

__all__ = ["check_input_size", "exec_", "logs", "stream_execution"]

INTERRUPTED = 130


BACKLOG = 64 << 20
"""Characters of a run's output this command holds while its stdout does not take them (a pager waiting):
past them, output is dropped with a line saying so. The websocket is read meanwhile, so that a paused
pager does not have its connection (and run) ended for not answering the gateway's pings."""


async def stream_execution(client: BerthClient, session_id: str, code: str, mode: str, stdin: str | None = None,
                           argv: list[str] | None = None, detach: bool = False) -> int:
    """Runs ``code`` in the session, writes its output to this process's stdout and stderr as it
    arrives, and returns its exit code (1 with a message when the stream ends without one).

    The first Ctrl-C interrupts the run (``interruptExecution``; the stream announces its id) and its
    output goes on to the end, so that Python's ``KeyboardInterrupt`` shows where it stopped, as in
    Jupyter; the next one (or one before the run started) stops waiting, and the closed stream
    interrupts the run. The output is written by a thread (``_write_out``): the event loop never waits
    for a stdout that does not take it."""
    variables: dict[str, Any] = {"id": session_id, "code": code, "mode": mode, "stdin": stdin, "argv": argv,
                                 "detach": detach}
    streaming = asyncio.current_task()
    run_id: str | None = None
    interrupts: list[asyncio.Task[None]] = []
    backlog: Backlog[dict[str, Any]] = Backlog(BACKLOG, _characters, _dropped, _is_done)
    writing = asyncio.ensure_future(_write_out(backlog))

    def on_ctrl_c() -> None:
        if run_id is not None and not interrupts:
            click.echo("\nberth: interrupting the run (Ctrl-C again to stop waiting for it)", err=True)
            interrupts.append(asyncio.ensure_future(_interrupt(client, session_id, run_id)))
        elif streaming is not None:  # before the run started, or a second Ctrl-C: stop waiting
            streaming.cancel()

    try:
        with on_signals((signal.SIGINT,), lambda _signum: on_ctrl_c()):
            try:
                async for data in client.subscribe(q.EXECUTE, variables):
                    item = data["execute"]
                    run_id = item["runId"]
                    if item["kind"] != "started":
                        backlog.put(item)
                    if item["kind"] == "done" or writing.done():
                        break
            except BerthAPIError as exc:
                backlog.fail(exc)  # after the output that came before it
            backlog.close()
            exit_code = await writing
    except asyncio.CancelledError:
        if streaming is not None and streaming.cancelling():  # our Ctrl-C: as an unhandled one would end
            raise KeyboardInterrupt from None
        raise
    finally:
        writing.cancel()
    if exit_code != 0 and not detach:  # cut short by the session's end? (its worker killed, its runner gone)
        ended = await ended_under(client, session_id)
        if ended is not None:
            click.echo(ended, err=True)
    if exit_code is None:
        click.echo("berth: the execution ended without an exit code", err=True)
        return 1
    return exit_code


async def _write_out(backlog: Backlog[dict[str, Any]]) -> int | None:
    """Writes the run's output to stdout and stderr, each write in a thread; returns the exit code of its
    ``done``, None when the stream ended without one."""
    async for item in backlog:
        if item["kind"] == "done":
            if item.get("truncated") or backlog.dropped:
                click.echo("berth: some of the run's output was dropped: it was read more slowly than the run "
                           "wrote it (a line in the output says where and how much)", err=True)
            return int(item["exitCode"])
        await asyncio.to_thread(_write_to, sys.stdout if item["kind"] == "stdout" else sys.stderr, item["data"] or "")
    return None


def _write_to(stream: Any, text: str) -> None:
    stream.write(text)
    stream.flush()


def _characters(item: dict[str, Any]) -> int | None:
    return None if _is_done(item) else len(item["data"] or "")


def _dropped(characters: int, before: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "stderr", "data": output_dropped_note(characters, "this command's stdout")}


def _is_done(item: dict[str, Any]) -> bool:
    return item["kind"] == "done"


async def _interrupt(client: BerthClient, session_id: str, run_id: str) -> None:
    """Asks the gateway to interrupt the run; says so when it could not."""
    try:
        if not (await client.execute(q.INTERRUPT_EXECUTION, {"id": session_id, "runId": run_id}))["interruptExecution"]:
            click.echo("berth: the run had ended already", err=True)
    except BerthAPIError as exc:
        click.echo(f"berth: could not interrupt the run: {exc.code}: {exc.message}", err=True)


def check_input_size(code: str, stdin: str | None, argv: Sequence[str] = ()) -> None:
    """Refuses, before anything is sent, code, stdin and arguments larger than one execution takes."""
    size = exec_input_size(code, stdin, argv)
    if size > MAX_EXEC_INPUT:
        raise click.ClickException(
            f"code, stdin and arguments are {size:,} bytes together; an execution takes at most {MAX_EXEC_INPUT:,} "
            "(1 MiB): put larger data in a folder (berth vfolder upload FOLDER FILE) and mount it (--mount FOLDER)")


def exit_with(code: int) -> None:
    """Ends the command with the program's exit status (0..255)."""
    sys.exit(code if 0 <= code <= 255 else 1)


@run_async
async def _exec(session_id: str, code: str, mode: str, stdin: str | None, detach: bool) -> int:
    async with connect_client() as client:
        return await stream_execution(client, session_id, code, mode, stdin, detach=detach)


@click.command("exec")
@click.argument("session_id", metavar="SESSION")
@click.argument("code", required=False)
@click.option("-f", "--file", "code_file", type=click.File("r"),
              help="Run this file's text instead of CODE ('-' for our stdin).")
@click.option("--exec", "batch", is_flag=True, help="CODE is a shell command (batch mode), not Python.")
@click.option("--stdin", "stdin_file", type=click.File("r"),
              help="Feed this file ('-' for ours) to the program's stdin.")
@click.option("--detach", is_flag=True,
              help="Start CODE as a shell command that runs on in the background (a service: Jupyter, TensorBoard, "
                   "for `berth app`); its output goes to the session's log (`berth logs`). Returns at once.")
def exec_(session_id: str, code: str | None, code_file: Any, batch: bool, stdin_file: Any, detach: bool) -> None:
    """Run CODE (or the text of -f FILE) in a running session (Python in its persistent namespace, or a
    shell command with --exec); stream its output; exit with its exit status.

    SESSION is an id, a unique id prefix (4+ characters) or a name."""
    code = _code(code, code_file, stdin_file)
    if detach and stdin_file is not None:
        raise click.UsageError("--detach runs on reading nothing: it takes no --stdin")
    stdin = stdin_file.read() if stdin_file is not None else None
    check_input_size(code, stdin)
    try:
        exit_with(_exec(session_id, code, "batch" if batch or detach else "query", stdin, detach))
    except KeyboardInterrupt:
        exit_with(INTERRUPTED)


def _code(code: str | None, code_file: Any, stdin_file: Any) -> str:
    """The code to run: CODE or the text of -f FILE, exactly one of them."""
    if code_file is None:
        if code is None:
            raise click.UsageError("give the code to run: CODE, or -f FILE")
        return code
    if code is not None:
        raise click.UsageError("give the code to run as CODE or with -f FILE, not both")
    if stdin_file is not None and code_file.name == stdin_file.name == "<stdin>":
        raise click.UsageError("-f - and --stdin - would both read our stdin: give one of them a file")
    return str(code_file.read())


@run_async
async def _logs(session_id: str) -> str:
    async with connect_client() as client:
        return (await client.execute(q.SESSION_LOGS, {"id": session_id}))["sessionLogs"] or ""


def _write(text: str) -> None:
    _write_to(sys.stdout, text)


@run_async
async def _follow(session_id: str, poll: float) -> None:
    async with connect_client() as client:
        await follow_logs(client, session_id, _write, lambda message: click.echo(message, err=True), poll)


@click.command("logs")
@click.argument("session_id", metavar="SESSION")
@click.option("-f", "--follow", is_flag=True,
              help="Keep printing what is added until the session ends (then say how it ended, on stderr) or Ctrl-C.")
@click.option("--poll", type=float, default=1.0, show_default=True, help="Seconds between checks with --follow.")
def logs(session_id: str, follow: bool, poll: float) -> None:
    """Print the log of a session's main kernel; with -f, follow it.

    SESSION is an id, a unique id prefix (4+ characters) or a name."""
    if not follow:
        click.echo(_logs(session_id), nl=False)
        return
    try:
        _follow(session_id, poll)
    except KeyboardInterrupt:
        exit_with(INTERRUPTED)
