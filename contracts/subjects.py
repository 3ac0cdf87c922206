"""Streams, subjects and buckets: every name on the bus is defined here and only here."""

from __future__ import annotations

import re

from contracts.envelope import context_of, short_type_of

__all__ = [
    "DEADLETTER_STREAM",
    "EVENTS_STREAM",
    "HEADER_POSITION",
    "HEADER_ERROR",
    "HEARTBEAT_BUCKET",
    "REPORTS_STREAM",
    "SubjectError",
    "agent_events_filter",
    "check_token",
    "context_events_filter",
    "dead_letter_subject",
    "event_subject",
    "report_subject",
    "session_events_filter",
]

EVENTS_STREAM = "EVENTS"
EVENTS_SUBJECTS = ["ev.>"]
REPORTS_STREAM = "REPORTS"
REPORTS_SUBJECTS = ["rp.>"]
DEADLETTER_STREAM = "DEADLETTER"
DEADLETTER_SUBJECTS = ["dlq.>"]
HEARTBEAT_BUCKET = "agent_heartbeats"

HEADER_POSITION = "Berth-Position"
"""Header carrying the event store notification id (the global position) of an event."""
HEADER_ERROR = "Berth-Error"
HEADER_ORIGINAL_SUBJECT = "Berth-Original-Subject"

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")
"""A subject token; always used with ``fullmatch`` (``$`` would let a trailing newline through)."""


class SubjectError(ValueError):
    """Raised when an id cannot be used as a subject token."""


def check_token(value: str, what: str = "id") -> str:
    """Returns ``value`` when it is a safe subject token (letters, digits, ``-``, ``_``)."""
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        shown = repr(value) if len(str(value)) <= 80 else f"{str(value)[:80]!r}... ({len(str(value))} characters)"
        raise SubjectError(f"invalid {what} {shown}: use 1-128 letters, digits, '-' or '_'")
    return value


def event_subject(type_name: str, aggregate_id: str) -> str:
    """Returns ``ev.<context>.<aggregate_id>.<type>`` for an event; raises ``SubjectError`` when
    any of its tokens is not a safe subject token (a type name needs a context and a type)."""
    if "." not in type_name:
        raise SubjectError(f"invalid event type name {type_name!r}: expected '<context>.<type>'")
    context = check_token(context_of(type_name), "event context")
    short_type = check_token(short_type_of(type_name), "event type")
    return f"ev.{context}.{check_token(aggregate_id)}.{short_type}"


def context_events_filter(type_name: str) -> str:
    """Returns ``ev.<context>.>``: every event of the context of the event type ``type_name``."""
    return f"ev.{check_token(context_of(type_name), 'event context')}.>"


def session_events_filter(session_id: str) -> str:
    return f"ev.session.{check_token(session_id, 'session id')}.>"


def agent_events_filter(agent_id: str) -> str:
    return f"ev.agent.{check_token(agent_id, 'agent id')}.>"


def report_subject(agent_id: str, report_type: str) -> str:
    """Returns ``rp.agent.<agent_id>.<type>``."""
    return f"rp.agent.{check_token(agent_id, 'agent id')}.{report_type}"


def dead_letter_subject(consumer: str) -> str:
    """Returns the dead-letter subject of a consumer: ``dlq.<consumer>``."""
    return f"dlq.{check_token(consumer, 'consumer')}"
