"""Streams, subjects and buckets: every name on the bus is defined here and only here."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from contracts.catalog import ALL_EVENTS
from contracts.envelope import Event, context_of, short_type_of
from contracts.reports import ALL_REPORTS, Report
from contracts.storage_reports import ALL_STORAGE_REPORTS, StorageReport

__all__ = [
    "DEADLETTER_STREAM",
    "EVENTS_STREAM",
    "HEADER_POSITION",
    "HEADER_TRUNCATED",
    "HEADER_CONSUMER",
    "HEADER_DEAD_LETTERED_AT",
    "HEADER_DELIVERIES",
    "HEADER_ORIGINAL_SHA256",
    "HEADER_ORIGINAL_SIZE",
    "HEADER_ERROR",
    "HEADER_ORIGINAL_SUBJECT",
    "HEALTH_BUCKET",
    "HEARTBEAT_BUCKET",
    "REPORTS_STREAM",
    "SCHEDULER_CHECKPOINT_BUCKET",
    "SubjectError",
    "agent_events_filter",
    "agent_report_subjects",
    "check_token",
    "context_events_filter",
    "dead_letter_consumer",
    "dead_letter_filters",
    "dead_letter_subject",
    "dead_letter_subject_of",
    "event_filters",
    "event_subject",
    "invalid_event_subject",
    "is_event_subject",
    "event_type_filter",
    "heartbeat_key_subject",
    "report_filters",
    "report_sender",
    "report_subject",
    "report_type_filter",
    "session_events_filter",
    "storage_report_filter",
    "vfolder_events_filter",
    "storage_report_subject",
    "storage_report_volume",
]

EVENTS_STREAM = "EVENTS"
EVENTS_SUBJECTS = ["ev.>"]
REPORTS_STREAM = "REPORTS"
REPORTS_SUBJECTS = ["rp.>"]
AGENT_REPORTS_FILTER = "rp.agent.>"
"""Every agent's reports (the storage service's are on ``rp.storage.>``)."""
DEADLETTER_STREAM = "DEADLETTER"
DEADLETTER_SUBJECTS = ["dlq.>"]
HEARTBEAT_BUCKET = "agent_heartbeats"
HEALTH_BUCKET = "service_health"
"""Key-value bucket: per service process (key ``<service>-<pid>``), the outages it is waiting out."""
SCHEDULER_CHECKPOINT_BUCKET = "scheduler_checkpoint"
"""Key-value bucket: the scheduler's snapshot with the ``EVENTS`` sequence it reflects (written by
the scheduler's identity only)."""

HEADER_POSITION = "Berth-Position"
"""Header carrying the event store notification id (the global position) of an event."""
HEADER_ERROR = "Berth-Error"
"""Dead letters: why the message was given up (the error, at most 1,000 characters)."""
HEADER_ORIGINAL_SUBJECT = "Berth-Original-Subject"
"""Dead letters: the subject the message was consumed from (where a replay publishes it)."""
HEADER_DELIVERIES = "Berth-Deliveries"
"""Dead letters: how many times the consumer got the message (decimal; 0 when not known)."""
HEADER_CONSUMER = "Berth-Consumer"
"""Dead letters: the consumer that gave the message up (its durable name)."""
HEADER_DEAD_LETTERED_AT = "Berth-Dead-Lettered-At"
"""Dead letters: when the message was given up (ISO 8601, UTC)."""
HEADER_TRUNCATED = "Berth-Truncated"
"""Dead letters: ``true`` when the body is only the beginning of the message (it did not fit with the headers)."""
HEADER_ORIGINAL_SIZE = "Berth-Original-Size"
"""Dead letters, truncated: the size of the whole message in bytes (decimal)."""
HEADER_ORIGINAL_SHA256 = "Berth-Original-Sha256"
"""Dead letters, truncated: the SHA-256 of the whole message (hex)."""

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
    context, short_type = _type_tokens(type_name)
    return f"ev.{context}.{check_token(aggregate_id)}.{short_type}"


@lru_cache(maxsize=1024)
def _type_tokens(type_name: str) -> tuple[str, str]:
    """Returns the context and the type of an event type name, each checked as a subject token
    (kept: a platform has a few dozen type names, and every event's subject needs them)."""
    if "." not in type_name:
        raise SubjectError(f"invalid event type name {type_name!r}: expected '<context>.<type>'")
    return check_token(context_of(type_name), "event context"), check_token(short_type_of(type_name), "event type")


def invalid_event_subject(position: int) -> str:
    """Returns ``ev.invalid.<position>.event``: where the relay publishes a stored event whose type or
    id cannot form a subject (never produced by the domain), so the stream keeps every position."""
    return f"ev.invalid.{int(position)}.event"


def context_events_filter(type_name: str) -> str:
    """Returns ``ev.<context>.>``: every event of the context of the event type ``type_name``."""
    return f"ev.{check_token(context_of(type_name), 'event context')}.>"


def event_type_filter(cls: type[Event], aggregate_id: str = "*") -> str:
    """Returns ``ev.<context>.*.<type>``: every event of the class ``cls`` (of one aggregate when
    ``aggregate_id`` is given)."""
    type_name = cls.type_name()
    if aggregate_id != "*":
        check_token(aggregate_id)
    return f"ev.{check_token(context_of(type_name), 'event context')}.{aggregate_id}.{check_token(short_type_of(type_name), 'event type')}"


def event_filters(classes: Iterable[type[Event]], aggregate_id: str = "*") -> tuple[str, ...]:
    """Returns the fewest filter subjects that take exactly the events of ``classes`` (of one
    aggregate when ``aggregate_id`` is given): ``ev.<context>.<id>.>`` for a context whose every
    catalogued event is among them (``ev.<context>.>`` for all aggregates), else
    ``ev.<context>.<id>.<type>`` per class, sorted."""
    wanted = set(classes)
    filters: set[str] = set()
    for cls in wanted:
        context = context_of(cls.type_name())
        whole = {c for c in ALL_EVENTS if context_of(c.type_name()) == context}
        if whole <= wanted:
            context = check_token(context, "event context")
            filters.add(f"ev.{context}.>" if aggregate_id == "*" else f"ev.{context}.{check_token(aggregate_id)}.>")
        else:
            filters.add(event_type_filter(cls, aggregate_id))
    return tuple(sorted(filters))


def session_events_filter(session_id: str) -> str:
    return f"ev.session.{check_token(session_id, 'session id')}.>"


def vfolder_events_filter(folder_id: str) -> str:
    return f"ev.vfolder.{check_token(folder_id, 'folder id')}.>"


def agent_events_filter(agent_id: str) -> str:
    return f"ev.agent.{check_token(agent_id, 'agent id')}.>"


def report_subject(agent_id: str, report_type: str) -> str:
    """Returns ``rp.agent.<agent_id>.<type>``."""
    return f"rp.agent.{check_token(agent_id, 'agent id')}.{report_type}"


def agent_report_subjects(agent_id: str) -> tuple[str, ...]:
    """Returns ``rp.agent.<agent_id>.<type>`` of every report type: the subjects one agent may publish
    its reports on, and no other (with ``rp.agent.<agent_id>.>`` an agent could make up subjects without
    end, each with its own share of ``REPORTS``' per-subject limit)."""
    return tuple(report_subject(agent_id, cls.type_name()) for cls in ALL_REPORTS)


def heartbeat_key_subject(agent_id: str) -> str:
    """Returns ``$KV.<bucket>.<agent_id>``: where the agent's heartbeat key is written."""
    return f"$KV.{HEARTBEAT_BUCKET}.{check_token(agent_id, 'agent id')}"


def report_type_filter(cls: type[Report]) -> str:
    """Returns ``rp.agent.*.<type>``: the reports of the class ``cls`` from every agent."""
    return f"rp.agent.*.{check_token(cls.type_name(), 'report type')}"


def report_filters(classes: Iterable[type[Report] | type[StorageReport]]) -> tuple[str, ...]:
    """Returns the filter subjects that take exactly the reports of ``classes``: every agent's
    (``rp.agent.>``) when they are every agent report type, every storage report
    (``rp.storage.>``) when they are every storage report type, else one per class, sorted."""
    wanted = set(classes)
    filters: set[str] = set()
    agent = {cls for cls in wanted if issubclass(cls, Report)}
    storage = {cls for cls in wanted if issubclass(cls, StorageReport)}
    if agent:
        filters |= {AGENT_REPORTS_FILTER} if set(ALL_REPORTS) <= agent else {report_type_filter(cls) for cls in agent}
    if storage:
        filters |= ({storage_report_filter()} if set(ALL_STORAGE_REPORTS) <= storage
                    else {storage_report_subject("*", cls.type_name()) for cls in storage})
    return tuple(sorted(filters))


def storage_report_subject(volume: str, report_type: str) -> str:
    """Returns ``rp.storage.<volume>.<type>`` (``*`` / ``>`` allowed as wildcards)."""
    if volume != "*":
        check_token(volume, "volume")
    if report_type not in ("*", ">"):
        check_token(report_type, "report type")
    return f"rp.storage.{volume}.{report_type}"


def storage_report_filter(volume: str = "*") -> str:
    """Returns ``rp.storage.<volume>.>`` (every volume's with ``*``: ``rp.storage.>``)."""
    return "rp.storage.>" if volume == "*" else storage_report_subject(volume, ">")


def storage_report_volume(subject: str) -> str:
    """Returns the volume of a storage report subject ``rp.storage.<volume>.<type>``; raises
    ``SubjectError`` when ``subject`` is not one."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[:2] != ["rp", "storage"]:
        raise SubjectError(f"not a storage report subject: {subject!r}")
    return check_token(parts[2], "volume")


def report_sender(subject: str) -> str:
    """Returns the agent id of a report subject ``rp.agent.<agent_id>.<type>``; raises
    ``SubjectError`` when ``subject`` is not one."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[:2] != ["rp", "agent"]:
        raise SubjectError(f"not a report subject: {subject!r}")
    return check_token(parts[2], "agent id")


def dead_letter_subject(consumer: str, sender: str | None = None) -> str:
    """Returns the dead-letter subject of a consumer, ``dlq.<consumer>``, or with ``sender`` that of its letters of
    one sender's messages, ``dlq.<consumer>.<sender>`` (``dead_letter_subject_of``)."""
    own = f"dlq.{check_token(consumer, 'consumer')}"
    return own if sender is None else f"{own}.{check_token(sender, 'sender')}"


def dead_letter_subject_of(consumer: str, subject: str) -> str:
    """Returns where ``consumer``'s dead letter of a message consumed on ``subject`` goes: for an agent's report
    ``dlq.<consumer>.<agent id>``, the agent id taken from ``subject`` (which only that agent may publish on), never
    from what the agent wrote, so that each agent fills its own share of ``DEADLETTER``'s per-subject limit and no
    other agent's (one agent's bad reports filled the controller's one subject, and every other agent's dead letters
    were refused); ``dlq.<consumer>`` for any other message."""
    try:
        return dead_letter_subject(consumer, report_sender(subject))
    except SubjectError:
        return dead_letter_subject(consumer)


def dead_letter_filters(consumer: str | None = None) -> tuple[str, ...]:
    """Returns the filter subjects of every dead letter of ``consumer``: ``dlq.<consumer>`` (with the letters a
    version before per-sender subjects wrote) and ``dlq.<consumer>.>`` (per sender); every consumer's when None."""
    if consumer is None:
        return tuple(DEADLETTER_SUBJECTS)
    own = dead_letter_subject(consumer)
    return own, f"{own}.>"


def dead_letter_consumer(subject: str) -> str:
    """Returns the consumer of a dead-letter subject ``dlq.<consumer>`` or ``dlq.<consumer>.<sender>`` (empty when
    it is not one)."""
    parts = subject.split(".")
    return parts[1] if len(parts) in (2, 3) and parts[0] == DEADLETTER_SUBJECTS[0].split(".")[0] else ""


def is_event_subject(subject: str) -> bool:
    """Returns True when ``subject`` is on the EVENTS stream (``ev.…``)."""
    return subject.split(".")[0] == EVENTS_SUBJECTS[0].split(".")[0]
