"""Interactive I/O between gateway and agent over core NATS (not events: DESIGN.md §7).

The gateway subscribes to ``io.agent.<agent_id>.<kernel_id>.<run_id>`` first, then sends an
``ExecRequest`` to ``exec.agent.<agent_id>`` and waits for an ``ExecAccepted`` reply;
the agent streams ``ExecChunk`` messages and ends with one ``ExecDone``.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import msgspec

from contracts.subjects import check_token

__all__ = [
    "MAX_EXEC_INPUT",
    "output_dropped_note",
    "EXEC_SUBJECTS",
    "IO_SUBJECTS",
    "LOGS_SUBJECTS",
    "ExecAccepted",
    "ExecChunk",
    "ExecDone",
    "ExecMode",
    "ExecOutput",
    "ExecRequest",
    "LogsRequest",
    "exec_input_size",
    "exec_subject",
    "io_agent_filter",
    "io_subject",
    "logs_subject",
]


MAX_EXEC_INPUT = 1 << 20
"""Bytes (UTF-8) of code, stdin and arguments together that one execution takes; larger data goes through a folder."""


def exec_input_size(code: str, stdin: str | None, argv: Sequence[str] = ()) -> int:
    """Returns the bytes of ``code``, ``stdin`` and ``argv`` together, as ``MAX_EXEC_INPUT`` counts them."""
    return len(code.encode()) + len((stdin or "").encode()) + sum(len(arg.encode()) for arg in argv)


def output_dropped_note(characters: int, reader: str) -> str:
    """The line on stderr where ``characters`` of a run's output were dropped because ``reader`` (the gateway's
    client, ``berth exec``'s stdout) read it more slowly than the run wrote it."""
    return (f"\nberth: {characters:,} characters of output dropped here: {reader} read the run's output more "
            "slowly than the run wrote it\n")


class ExecMode(str, Enum):
    QUERY = "query"
    """Python code run in the kernel's persistent namespace."""
    BATCH = "batch"
    """A shell command."""


class ExecRequest(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    run_id: str
    kernel_id: str
    mode: ExecMode = ExecMode.QUERY
    code: str
    stdin: str | None = None
    argv: list[str] | None = None
    """Query mode: the run's ``sys.argv`` (None: as the namespace has it; a new one's is ``[""]``, as Python's
    interactive prompt's)."""
    detach: bool = False
    """Batch mode: the command outlives the run (a service), its output going to the kernel's log; the run ends
    at once with its pid."""
    interrupt: bool = False
    """When True, interrupts the run ``run_id`` instead of starting one."""
    cancel: bool = False
    """With ``interrupt``: the run's client is gone, so the agent also ends the run's stream at once (an agent
    that predates the field takes it as a plain interrupt)."""
    probe: bool = False
    """When True, asks whether the run ``run_id`` is still streaming through the agent (``ok``) instead of
    starting one: the gateway's check of a run that has been silent a while (an agent restarted meanwhile
    has lost it)."""


class ExecAccepted(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    ok: bool
    error: str | None = None


class ExecChunk(msgspec.Struct, frozen=True, kw_only=True, tag="chunk", tag_field="kind", gc=False):
    seq: int
    stream: str
    """``stdout`` or ``stderr``."""
    data: str


class ExecDone(msgspec.Struct, frozen=True, kw_only=True, tag="done", tag_field="kind", gc=False):
    seq: int
    exit_code: int
    duration_ms: int


ExecOutput = ExecChunk | ExecDone


class LogsRequest(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    kernel_id: str
    tail: int | None = None


EXEC_SUBJECTS = "exec.agent.*"
"""Every agent's exec subject (the gateway sends execution requests to any agent)."""
LOGS_SUBJECTS = "logs.agent.*"
"""Every agent's logs subject."""
IO_SUBJECTS = "io.agent.*.>"
"""The output of every run on every agent."""


def exec_subject(agent_id: str) -> str:
    """Returns ``exec.agent.<agent_id>``, where an agent takes execution requests."""
    return f"exec.agent.{check_token(agent_id, 'agent id')}"


def logs_subject(agent_id: str) -> str:
    """Returns ``logs.agent.<agent_id>``, where an agent answers log requests."""
    return f"logs.agent.{check_token(agent_id, 'agent id')}"


def io_subject(agent_id: str, kernel_id: str, run_id: str) -> str:
    """Returns ``io.agent.<agent_id>.<kernel_id>.<run_id>``, where a run's output streams. The
    agent's id leads so that a permission can give each agent its own kernels' output and no other."""
    return (f"{io_agent_filter(agent_id)[:-1]}{check_token(kernel_id, 'kernel id')}."
            f"{check_token(run_id, 'run id')}")


def io_agent_filter(agent_id: str) -> str:
    """Returns ``io.agent.<agent_id>.>``: the output of every run on the agent's kernels."""
    return f"io.agent.{check_token(agent_id, 'agent id')}.>"
