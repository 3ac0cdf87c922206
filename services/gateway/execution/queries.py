"""Query ``sessionLogs`` (merged into ``Query`` in ``services.gateway.schema``)."""

from __future__ import annotations

import strawberry

from services.gateway.execution import runs

__all__ = ["ExecutionQuery"]


@strawberry.type
class ExecutionQuery:
    session_logs: str = strawberry.field(
        resolver=runs.session_logs,
        description="The log of the main kernel of one of your sessions (`sessionId`: its id, a unique id prefix or "
        "its name), as its agent keeps it.",
    )
