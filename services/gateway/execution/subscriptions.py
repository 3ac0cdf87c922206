"""Subscription ``execute`` (merged into ``Subscription`` in ``services.gateway.schema``)."""

from __future__ import annotations

import strawberry

from services.gateway.execution import runs

__all__ = ["ExecutionSubscription"]


@strawberry.type
class ExecutionSubscription:
    execute: runs.ExecItem = strawberry.subscription(
        resolver=runs.execute,
        description="Runs code in the main kernel of one of your RUNNING sessions (`sessionId`: its id, a unique id "
        "prefix or its name; mode `query`: Python in a "
        "persistent namespace; `batch`: a shell command); streams stdout/stderr chunks, then `done` with the exit "
        "code. "
        "With `announce`, the first item is `started`, with the run's id (for `interruptExecution`). `argv`: the "
        "run's `sys.argv` (mode `query`; a new session's is `[\"\"]`). `detach` (mode `batch`, no `stdin`): the "
        "command runs on after the run (a service such as Jupyter, to reach with `berth app`), its output going to "
        "the kernel's log (`sessionLogs`); the run ends at once, saying its pid.",
    )
