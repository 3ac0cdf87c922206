"""The common envelope of every Berth event.

Every event is a frozen, kw-only ``msgspec.Struct`` (``gc=False``: plain data, left out of the
cyclic collector's walks, as every struct of ``contracts``) tagged with a stable type name
(``"session.requested"``), never a Python path, so moving a class never breaks
stored history. The bytes stored in the event store are the bytes published on
JetStream: ``encode_event`` produces both.
"""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

__all__ = ["Event", "Metadata", "context_of", "short_type_of", "utc_now"]


class Metadata(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Says who caused an event and how it relates to others."""

    actor: str
    correlation_id: str
    causation_id: str | None = None
    trace: dict[str, str] = {}


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    """Base of all events: aggregate id and version, UTC timestamp and metadata."""

    event_id: uuid.UUID
    originator_id: str
    originator_version: int
    timestamp: dt.datetime
    metadata: Metadata

    @classmethod
    def type_name(cls) -> str:
        """Returns the stable type name (the msgspec tag) of this event class."""
        tag = cls.__struct_config__.tag
        if not isinstance(tag, str):
            raise TypeError(f"{cls.__name__} has no stable type name")
        return tag


def context_of(type_name: str) -> str:
    """Returns the bounded context of a type name: ``"session"`` for ``"session.requested"``."""
    return type_name.split(".", 1)[0]


def short_type_of(type_name: str) -> str:
    """Returns the type within its context: ``"requested"`` for ``"session.requested"``."""
    return type_name.split(".", 1)[1]


def utc_now() -> dt.datetime:
    """Returns the current time in UTC (for adapters; the domain takes ``now`` as an argument)."""
    return dt.datetime.now(dt.UTC)
