"""``berth run``: a session, one program in it, its output, its exit status."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import click

from services.cli import queries as q
from services.cli.connection import connect_client
from services.cli.exec_cmd import INTERRUPTED, check_input_size, exit_with, stream_execution
from services.cli.running import on_signals, run_async
from services.cli.output import Output
from services.cli.session_options import mount_option
from services.cli.sessions_common import (
    DEFAULT_IMAGE,
    GONE,
    RUNNING_OR_DONE,
    default_image,
    ended_under,
    fetch_session,
    follow_status,
    outcome,
    parse_resources,
    request_session,
)

__all__ = ["run"]

ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
"""What ends `berth run` from outside (``timeout``, a CI job cancelled, a closed terminal): like Ctrl-C, it stops
waiting and its cleanup runs (``--rm`` terminates, or cancels, the session), then it exits with 128 + the signal.
Python's default for them ended the process at once, leaving a ``--rm`` session holding its slots for good."""


@run_async
async def _run(*args: Any) -> int:
    """``_run_session`` until it ends or one of ``ENDING_SIGNALS`` arrives: then its cleanup runs and the
    status is 128 + the signal (a second one stops the cleanup too)."""
    received: list[int] = []
    try:
        with _ended_by(ENDING_SIGNALS, received):
            return await _run_session(*args)
    except (asyncio.CancelledError, KeyboardInterrupt):  # stream_execution turns our cancel into KeyboardInterrupt
        if received:
            return 128 + received[0]
        raise


def _ended_by(signals: tuple[signal.Signals, ...], received: list[int]) -> Any:
    """Within the block, each of ``signals`` cancels the current task (recorded in ``received``) instead of ending
    the process (``running.on_signals``)."""
    task = asyncio.current_task()

    def on_signal(signum: int) -> None:
        received.append(signum)
        if task is not None:
            task.cancel()

    return on_signals(signals, on_signal)


async def _run_session(out: Output, image: str, name: str | None, code: str, mode: str, resources: tuple[str, ...],
                       mounts: list[dict[str, str]], remove: bool, timeout: float, argv: list[str] | None) -> int:
    async with connect_client() as client:
        payload: dict[str, Any] = {"image": image}
        if name is not None:
            payload["name"] = name
        if resources:
            payload["resources"] = parse_resources(resources)
        if mounts:
            payload["mounts"] = mounts
        session_id, position = await request_session(client, payload)
        out.info(f"session {session_id} requested ({image})")
        status, running = "PENDING", False
        try:
            status, last = await follow_status(client, out, session_id, RUNNING_OR_DONE, timeout)
            if status != "RUNNING":
                data = await fetch_session(client, session_id, last or position)
                out.info(f"berth: session {session_id} did not start: {outcome(data)}")
                return 1
            running = True
            return await stream_execution(client, session_id, code, mode, argv=argv)
        finally:
            ref = name or session_id  # a live session's name addresses it (unique among the owner's live ones)
            if remove and status not in GONE:
                await _remove(client, out, session_id)
            elif running and await ended_under(client, session_id) is None:  # still running (or cannot be told)
                out.info(f"session {ref} kept: `berth exec {ref} CODE`, `berth session rm {ref}`")
            elif running or status in GONE:  # ended under the run (stream_execution said how): not kept
                out.info(f"its history: `berth events {session_id}`")  # an ended one's name may be another's too
            else:
                out.info(f"session {ref} is still {status}: `berth session info {ref}` says why, "
                         f"`berth session rm {ref}` cancels it")


async def _remove(client: Any, out: Output, session_id: str) -> None:
    try:
        await client.execute_while_unavailable(q.TERMINATE_SESSION, {"id": session_id})
        out.info(f"session {session_id}: termination requested")
    except Exception as exc:  # noqa: BLE001 - the program's outcome matters more; say what was left
        out.info(f"berth: could not terminate session {session_id}: {exc}")


def _argv(file: Path | None, args: tuple[str, ...], code: str | None, command: str | None) -> list[str] | None:
    """The run's ``sys.argv``, as ``python`` gives it: ``[FILE, ARGS...]``, ``["-c", ARGS...]`` (None for -c
    alone: the namespace's); a usage error for no program or more than one, arguments after ``--exec CMD``
    (the command holds its own) and a FILE that is not one."""
    if code is not None or command is not None:
        extra = ([str(file)] if file is not None else []) + list(args)
        if code is not None and command is not None:
            raise click.UsageError("give exactly one of -c CODE, FILE or --exec CMD")
        if command is not None:
            if extra:
                raise click.UsageError(f"--exec CMD takes no further arguments (the command holds its own): "
                                       f"got {' '.join(extra)!r}")
            return None
        return ["-c", *extra] if extra else None
    if file is None:
        raise click.UsageError("give exactly one of -c CODE, FILE or --exec CMD")
    if not file.is_file():
        raise click.BadParameter(f"File '{file}' does not exist.", param_hint="'[FILE]'")
    return [file.name, *args]


@click.command("run", context_settings={"allow_interspersed_args": False})
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("-c", "code", metavar="CODE", help="Python code to run.")
@click.option("--exec", "command", metavar="CMD", help="A shell command to run (batch mode) instead of Python.")
@click.option("-i", "--image", default=default_image, show_default=DEFAULT_IMAGE,
              help="Kernel image ($BERTH_DEFAULT_IMAGE overrides the default).")
@click.option("-n", "--name", default=None, help="Session name (unique among your live sessions), to address it later.")
@click.option("-r", "--resources", "resources", multiple=True, metavar="SLOT=AMOUNT",
              help="Resource slots, repeatable or comma-separated: -r cpu=2 -r mem=4g (default cpu=1,mem=1g).")
@mount_option
@click.option("--rm", "remove", is_flag=True, help="Terminate the session afterwards.")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for the session to run.")
@click.pass_obj
def run(out: Output, file: Path | None, args: tuple[str, ...], code: str | None, command: str | None, image: str,
        name: str | None, resources: tuple[str, ...], mounts: list[dict[str, str]], remove: bool,
        timeout: float) -> None:
    """Start a session, run Python (-c CODE or FILE [ARGS]...) or a shell command (--exec CMD) in it,
    stream its output and exit with its exit status. A FILE runs with sys.argv = [FILE, ARGS...], as
    `python FILE ARGS...` would; what follows FILE is its arguments, so berth run's options come before it.
    With -c CODE, ARGS follow it as with `python -c CODE ARGS...` (sys.argv = ["-c", ARGS...]).

    \b
    berth run -c "import os; print(os.cpu_count())"
    berth run --rm train.py --epochs 3
    berth run -c "import sys; print(sys.argv[1:])" a b
    berth run --exec "ls -l" -r cpu=2
    berth run -n train --exec "python3 train.py"   (then: berth logs train, berth session info train)
    berth run --mount data --mount models:ro --exec "python3 /home/work/data/train.py"
    """
    argv = _argv(file, args, code, command)
    if code is None and command is None:
        assert file is not None  # _argv refused the call without any
        code = file.read_text()
    mode = "batch" if command is not None else "query"
    check_input_size(command if command is not None else code or "", None, argv or ())  # before a session is asked for
    try:
        exit_with(_run(out, image, name, command if command is not None else code, mode, resources, mounts, remove,
                       timeout, argv))
    except KeyboardInterrupt:
        exit_with(INTERRUPTED)
