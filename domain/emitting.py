"""Builds events with their envelope: ids, time and metadata come in as arguments."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Callable, TypeVar

import msgspec

from contracts.envelope import Event, Metadata

__all__ = ["Context", "Emitter"]

E = TypeVar("E", bound=Event)


class Context(msgspec.Struct, frozen=True, kw_only=True):
    """What a decision may know of the world: the time, who acts, and an id source."""

    now: dt.datetime
    metadata: Metadata
    new_id: Callable[[], uuid.UUID] = uuid.uuid4


class Emitter:
    """Numbers the events of one aggregate in one decision, from its current version."""

    def __init__(self, aggregate_id: str, version: int, ctx: Context) -> None:
        self.aggregate_id = aggregate_id
        self.version = version
        self.ctx = ctx

    def __call__(self, cls: type[E], **fields: Any) -> E:
        self.version += 1
        return cls(
            event_id=self.ctx.new_id(),
            originator_id=self.aggregate_id,
            originator_version=self.version,
            timestamp=self.ctx.now,
            metadata=self.ctx.metadata,
            **fields,
        )
