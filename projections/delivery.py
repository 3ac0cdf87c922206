"""Checks one message of the EVENTS stream before it reaches the read models.

A message is accepted when its payload decodes as an event, its subject is the
subject of that event and it carries a positive ``Berth-Position``. A payload whose
envelope is valid but whose type this version does not know yet is accepted too:
it reaches only the event log. Anything else is rejected with a reason, for the
dead letters.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import NamedTuple

import msgspec

from contracts.catalog import decode_event, event_class
from contracts.envelope import Event, Metadata
from contracts.subjects import SubjectError, event_subject

__all__ = ["Delivery", "Entry", "Envelope", "Rejected", "check"]


class Delivery(NamedTuple):
    """A message as it came from the stream: sequence, subject, position header, payload."""

    stream_seq: int
    subject: str
    position: str | int | None
    data: bytes


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """The common fields of any event, known type or not."""

    type: str
    event_id: uuid.UUID
    originator_id: str
    originator_version: int
    timestamp: dt.datetime
    metadata: Metadata


class Entry(NamedTuple):
    """An accepted message: the event (None when its type is unknown here) and its envelope."""

    event: Event | None
    envelope: Event | Envelope
    type_name: str
    position: int
    stream_seq: int
    payload: bytes


class Rejected(NamedTuple):
    """A message that cannot be applied, with the reason."""

    delivery: Delivery
    error: str


_envelope_decoder = msgspec.json.Decoder(Envelope)


def check(delivery: Delivery) -> Entry | Rejected:
    """Returns the entry of ``delivery``, or why it is rejected (never raises on bad input)."""
    position = _position(delivery.position)
    if position is None:
        return Rejected(delivery, f"missing or invalid Berth-Position header: {delivery.position!r}")
    decoded = _decode(delivery.data)
    if isinstance(decoded, str):
        return Rejected(delivery, decoded)
    event, envelope, type_name = decoded
    if envelope.timestamp.tzinfo is None:
        return Rejected(delivery, "event timestamp has no time zone")
    try:
        expected = event_subject(type_name, envelope.originator_id)
    except (SubjectError, IndexError) as exc:
        return Rejected(delivery, f"no subject for type {type_name!r} and id {envelope.originator_id!r}: {exc}")
    if delivery.subject != expected:
        return Rejected(delivery, f"subject {delivery.subject!r} does not match the payload (expected {expected!r})")
    return Entry(event, envelope, type_name, position, delivery.stream_seq, delivery.data)


def _position(raw: str | int | None) -> int | None:
    if isinstance(raw, int):
        return raw if raw > 0 else None
    if raw is None or not raw.isdigit():
        return None
    value = int(raw)
    return value if value > 0 else None


def _decode(data: bytes) -> tuple[Event | None, Event | Envelope, str] | str:
    try:
        event = decode_event(data)
    except msgspec.ValidationError as exc:  # a subclass of DecodeError: valid JSON, wrong shape
        try:
            envelope = _envelope_decoder.decode(data)
        except msgspec.MsgspecError:
            return f"ValidationError: {exc}"
        if _is_known(envelope.type):
            return f"ValidationError: {exc}"
        return None, envelope, envelope.type
    except msgspec.DecodeError as exc:
        return f"DecodeError: {exc}"
    return event, event, type(event).type_name()


def _is_known(type_name: str) -> bool:
    try:
        event_class(type_name)
    except KeyError:
        return False
    return True
