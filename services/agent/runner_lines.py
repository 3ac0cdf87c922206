"""What a kernel runner may send on a run's connection, as a strict schema: anything else is refused.

The runner is the kernel's (a custom image or the user's code can replace it), so each line is decoded
into one of these typed structs, never into whatever JSON it holds: an object with a known ``kind`` and
only its fields; ``data`` a string of at most ``MAX_DATA`` characters (the runner sends at most 16 KiB of
output per line); an exit code within int32 (a process's status; the gateway's GraphQL ``Int``). A line
that does not fit (not JSON, not an object, an unknown kind or field, a value of the wrong type or out of
bounds, nesting where a string belongs) raises ``RefusedLine`` saying what was wrong.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = ["INT32", "MAX_DATA", "RefusedLine", "RunnerDone", "RunnerError", "RunnerInterrupted", "RunnerLine",
           "RunnerStderr", "RunnerStdout", "decode_interrupted", "decode_line"]

MAX_DATA = 64 << 10
"""Characters of output (or of an error's message) in one runner line."""
INT32 = 2**31 - 1

_Data = Annotated[str, msgspec.Meta(max_length=MAX_DATA)]
_RunId = Annotated[str, msgspec.Meta(max_length=256)]


class _Line(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="kind", gc=False):
    run_id: _RunId | None = None


class RunnerStdout(_Line, tag="stdout"):
    data: _Data


class RunnerStderr(_Line, tag="stderr"):
    data: _Data


class RunnerDone(_Line, tag="done"):
    exit_code: Annotated[int, msgspec.Meta(ge=-INT32 - 1, le=INT32)]
    duration_ms: Annotated[int, msgspec.Meta(ge=0)]


class RunnerError(_Line, tag="error"):
    message: _Data = ""


RunnerLine = RunnerStdout | RunnerStderr | RunnerDone | RunnerError


class RunnerInterrupted(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """The runner's answer to an ``interrupt``: whether the run was running there."""

    op: Literal["interrupted"]
    run_id: _RunId | None = None
    ok: bool


_DECODER = msgspec.json.Decoder(RunnerLine)
_INTERRUPTED = msgspec.json.Decoder(RunnerInterrupted)


class RefusedLine(ValueError):
    """Raised when a runner's line is not one the schema allows; the message says what was wrong."""


def decode_line(line: bytes) -> RunnerLine:
    """Returns the runner's ``line`` decoded; RefusedLine when it is not one of the schema's."""
    try:
        return _DECODER.decode(line)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise RefusedLine(str(exc)[:200]) from None


def decode_interrupted(line: bytes) -> bool:
    """Returns whether the runner's answer ``line`` to an interrupt says the run was running; RefusedLine when
    it is no such answer."""
    try:
        return _INTERRUPTED.decode(line).ok
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise RefusedLine(str(exc)[:200]) from None
