"""Nothing recorded that cannot travel: the guard the event store runs before every save.

Every event the store records is later published by the relay as one NATS message: subject
``ev.<context>.<aggregate_id>.<type>`` and payload the event's msgspec JSON (``encode_event``,
the very bytes stored). An event that NATS would refuse would halt the relay for good, so the
store refuses it instead, before anything is written: ``check_travel`` (run by the store's mapper
on the very bytes it stores) raises ``TravelError``
when an event's encoded size is over ``MAX_EVENT_BYTES`` or a token of its subject is invalid.

``TravelError`` is a ``SubjectError``, so every caller that answers refused input with
BAD_INPUT (the gateway) does so for it too.
"""

from __future__ import annotations

from collections.abc import Iterable

from contracts.catalog import encode_event
from contracts.envelope import Event
from contracts.subjects import SubjectError, event_subject

__all__ = ["HEADER_ALLOWANCE", "MAX_EVENT_BYTES", "NATS_DEFAULT_MAX_PAYLOAD", "TravelError", "check_travel", "check_travels"]

NATS_DEFAULT_MAX_PAYLOAD = 1024 * 1024
"""NATS refuses a larger message (headers included) unless the server raises ``max_payload``."""

MAX_EVENT_BYTES = 256 * 1024
"""The largest encoded event the store records: a quarter of NATS' default ``max_payload``, so
that the relay's headers (``HEADER_ALLOWANCE``) always fit and a server or stream configured
below the default still takes every event. The input limits (``contracts.limits``) keep the
events of any accepted command far below it."""

HEADER_ALLOWANCE = 4 * 1024
"""Bytes reserved for the headers the relay adds (message id, position, expected last id)."""

assert MAX_EVENT_BYTES + HEADER_ALLOWANCE <= NATS_DEFAULT_MAX_PAYLOAD


class TravelError(SubjectError):
    """Raised when an event could not travel on the bus: its encoded form is over
    ``MAX_EVENT_BYTES``, or its subject would hold an invalid token. Nothing is recorded."""


def check_travels(events: Iterable[Event]) -> None:
    """Returns when every event of ``events`` can be published as it is; raises ``TravelError``
    naming the first one that cannot (its type, aggregate and why)."""
    for event in events:
        check_travel(event, encode_event(event))


def check_travel(event: Event, encoded: bytes) -> None:
    """``check_travels`` for one event whose canonical encoding ``encoded`` the caller has already
    made (the store's mapper: one encoding per saved event)."""
    type_name = type(event).type_name()
    try:
        event_subject(type_name, event.originator_id)
    except SubjectError as exc:
        raise TravelError(f"event {type_name} cannot be published: {exc}") from exc
    if len(encoded) > MAX_EVENT_BYTES:
        raise TravelError(
            f"event {type_name} of {event.originator_id} would be {len(encoded)} bytes, over the limit of "
            f"{MAX_EVENT_BYTES} bytes an event may have: shorten the largest fields of the request"
        )
