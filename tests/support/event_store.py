"""What the event store's contract tests share (``tests/integration/test_event_store_*.py``): the stores they
run against (eventsourcing's in-memory store and PostgreSQL through ``services.common.pg_recorder``, the
``backend`` fixture) and the events they record."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

import pytest

from contracts import agent as agent_events
from contracts.envelope import Event, Metadata
from domain import agent as agent_domain
from domain.emitting import Context, Emitter
from services.common.store import BerthApplication
from tests.support.read_counting import CountsReads

__all__ = ["NOW", "SLOTS", "Backend", "CountingStore", "agent_history", "assigned", "backend", "context", "ids",
           "notifications", "registered"]

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SLOTS = {"cpu": Decimal("1.5"), "mem": Decimal(1024**3)}


class CountingStore(CountsReads, BerthApplication):
    """The application as the services use it, counting what ``current`` reads from the store."""

    long_lived = frozenset({agent_domain.evolve})


@dataclass
class Backend:
    kind: str
    store: CountingStore
    open: Callable[[], BerthApplication]
    """Opens another application on the same store (PostgreSQL: another connection pool, as
    another service would; in memory: the store itself, the only one that shares its log)."""
    dsn: str | None = None


@pytest.fixture(params=["memory", "postgres"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "memory":
        store = CountingStore(None)
        yield Backend("memory", store, lambda: store)
        store.close()
        return
    dsn: str = request.getfixturevalue("pg_dsn")
    store = CountingStore(dsn)
    opened: list[BerthApplication] = []

    def open_peer() -> BerthApplication:
        opened.append(BerthApplication(dsn))
        return opened[-1]

    yield Backend("postgres", store, open_peer, dsn)
    for app in opened:
        app.close()
    store.close()


# --- events ------------------------------------------------------------------------------------


def context(now: dt.datetime = NOW) -> Context:
    return Context(now=now, metadata=Metadata(actor="contract-test", correlation_id="corr"))


def registered(agent_id: str, *, now: dt.datetime = NOW) -> Event:
    return Emitter(agent_id, 0, context(now))(
        agent_events.AgentRegistered, capacity={"cpu": Decimal(64), "mem": Decimal(2**40)}, backend="sim", hostname="h"
    )


def assigned(agent_id: str, version: int, *, now: dt.datetime = NOW, startup_command: str | None = None) -> Event:
    """``KernelAssigned`` as version ``version`` of ``agent_id``."""
    return Emitter(agent_id, version - 1, context(now))(
        agent_events.KernelAssigned, kernel_id=f"{agent_id}-k{version}", session_id=f"s{version}", image="img",
        slots=SLOTS, startup_command=startup_command,
    )


def agent_history(agent_id: str, length: int, *, now: dt.datetime = NOW) -> list[Event]:
    """Versions 1..length of an agent: registered, then kernels assigned."""
    return [registered(agent_id, now=now)] + [assigned(agent_id, v, now=now) for v in range(2, length + 1)]


def ids(events: Sequence[Event]) -> list[tuple[str, int]]:
    return [(e.originator_id, e.originator_version) for e in events]


def notifications(app: BerthApplication) -> list[Any]:
    return list(app.recorder.select_notifications(start=1, limit=1_000_000))  # type: ignore[attr-defined]
