"""Mutation ``interruptExecution`` (merged into ``Mutation`` in ``services.gateway.schema``)."""

from __future__ import annotations

import strawberry

from services.gateway.execution import runs

__all__ = ["ExecutionMutation"]


@strawberry.type
class ExecutionMutation:
    interrupt_execution: bool = strawberry.mutation(
        resolver=runs.interrupt_execution,
        description="Interrupts run `runId` (an `execute` item's) in the main kernel of one of your RUNNING sessions, "
        "as Ctrl-C would: Python gets KeyboardInterrupt, a shell command SIGINT; the run's `execute` stream goes on "
        "to `done`. False when that run is not running.",
    )
