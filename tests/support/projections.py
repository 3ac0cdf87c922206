"""Builders and fixtures shared by the read-model tests (no tests here).

Events are built by hand with fixed ids and times, and applied through the runner
exactly as the projector applies them: one delivery per event, positions and stream
sequences counting up.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from contracts import agent as ag
from contracts import session as ss
from contracts.catalog import encode_event
from contracts.envelope import Event, Metadata
from contracts.status import Reason, SessionStatus
from contracts.subjects import event_subject
from projections.delivery import Delivery, Rejected
from projections.runner import BatchResult, apply_batch
from projections.schema import create_schema

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
META = Metadata(actor="ak-test", correlation_id="corr-1", causation_id="cause-1")


def at(seconds: int) -> dt.datetime:
    """Returns T0 plus ``seconds``."""
    return T0 + dt.timedelta(seconds=seconds)


class Builder:
    """Numbers the events of each aggregate and gives them fixed ids and times."""

    def __init__(self) -> None:
        self._versions: dict[str, int] = {}
        self._ids = itertools.count(1)
        self.clock = 0

    def __call__(self, cls: type[Event], aggregate_id: str, **fields: Any) -> Event:
        version = self._versions.get(aggregate_id, 0) + 1
        self._versions[aggregate_id] = version
        self.clock += 1
        return cls(
            event_id=uuid.UUID(int=next(self._ids)),
            originator_id=aggregate_id,
            originator_version=version,
            timestamp=at(self.clock),
            metadata=META,
            **fields,
        )

    def requested(self, session_id: str, *kernels: tuple[str, dict[str, Decimal]], name: str = "job") -> Event:
        specs = [
            ss.KernelSpec(kernel_id=kid, cluster_role="main" if i == 0 else "sub", cluster_idx=i, slots=slots)
            for i, (kid, slots) in enumerate(kernels)
        ]
        return self(ss.SessionRequested, session_id, owner="ak-owner",
                    spec=ss.SessionSpec(name=name, image="python:3.11", kernels=specs))

    def scheduled(self, session_id: str, **placements: str) -> Event:
        return self(
            ss.SessionScheduled,
            session_id,
            placements=[ss.KernelPlacement(kernel_id=k, agent_id=a) for k, a in placements.items()],
        )

    def status(self, session_id: str, status: SessionStatus, reason: Reason) -> Event:
        return self(ss.SessionStatusChanged, session_id, status=status, reason=reason)

    def registered(self, agent_id: str, **capacity: str) -> Event:
        return self(
            ag.AgentRegistered,
            agent_id,
            capacity={k.replace("_", "."): Decimal(v) for k, v in capacity.items()},
            backend="process",
            hostname=f"{agent_id}.local",
        )


def slots(cpu: str, mem: str, **extra: str) -> dict[str, Decimal]:
    """Returns a slot mapping (``cuda_device=`` becomes ``cuda.device``)."""
    return {"cpu": Decimal(cpu), "mem": Decimal(mem), **{k.replace("_", "."): Decimal(v) for k, v in extra.items()}}


class Feeder:
    """Applies events (or raw messages) as the projector does, counting positions up."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.position = 0
        self.stream_seq = 0
        self.rejected: list[Rejected] = []

    def delivery(self, event: Event) -> Delivery:
        self.position += 1
        self.stream_seq += 1
        subject = event_subject(type(event).type_name(), event.originator_id)
        return Delivery(self.stream_seq, subject, str(self.position), encode_event(event))

    def raw(self, subject: str, data: bytes, position: str | None) -> Delivery:
        self.stream_seq += 1
        return Delivery(self.stream_seq, subject, position, data)

    def apply(self, *items: Event | Delivery) -> BatchResult:
        deliveries = [i if isinstance(i, Delivery) else self.delivery(i) for i in items]
        return apply_batch(self.conn, deliveries, on_reject=self.rejected.append)

    def row(self, query: str, *params: Any) -> tuple[Any, ...] | None:
        return self.conn.execute(query, params).fetchone()

    def rows(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        return self.conn.execute(query, params).fetchall()


@pytest.fixture
def read_models(pg_dsn: str) -> Iterator[psycopg.Connection]:
    """Yields an autocommit connection to a fresh database with the read-model schema."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        create_schema(conn)
        yield conn


@pytest.fixture
def feed(read_models: psycopg.Connection) -> Feeder:
    """Returns a feeder on a fresh read-model database."""
    return Feeder(read_models)


@pytest.fixture
def build() -> Builder:
    """Returns an event builder with its own numbering."""
    return Builder()
