"""The session and agent use cases on the test's PostgreSQL database."""

from __future__ import annotations

from typing import Iterator

import pytest

from services.application.agents import Agents
from services.application.sessions import Sessions

__all__ = ["apps"]


@pytest.fixture
def apps(pg_dsn: str) -> Iterator[tuple[Sessions, Agents]]:
    """``(Sessions, Agents)`` on the test's database; created first, they also create the event store's tables."""
    sessions, agents = Sessions(pg_dsn), Agents(pg_dsn)
    yield sessions, agents
    sessions.close()
    agents.close()
