"""The dead-letter stream as a queue an operator works through (JetStream only, no GraphQL).

Every message a consumer gave up is in ``DEADLETTER`` on ``dlq.<consumer>`` with its error, the
subject it was consumed from, the delivery count, the consumer and the time in headers
(``contracts.subjects.HEADER_*``; older entries may lack the last three). Entries are addressed
by their stream sequence.

``replay`` publishes an entry's bytes again on its original subject and then deletes the entry,
**exactly once** in effect: the publish carries ``Nats-Msg-Id: dlq-replay:<sequence>``, so a replay
repeated after a crash between the publish and the delete is dropped by the stream's duplicate
window (2 minutes); after that window a second copy may be stored, and the controller applies a
duplicate report as a no-op (every report command is idempotent). Only reports (``rp.>``, the
work queue whose one consumer is the controller) are replayed: an event (``ev.>``) is never
published again — every consumer of ``EVENTS`` would get it twice and the relay resumes from the
stream's last message; such an entry is refused with that reason (drop it once its cause is dealt
with: the agents' reconciliation and the controller's deadlines converge what it left undone,
``berth projections rebuild`` re-applies events to the read models).
"""

from __future__ import annotations

import datetime as dt

import msgspec
from nats.js import JetStreamContext
from nats.js.api import Header, RawStreamMsg
from nats.js.errors import NotFoundError

from contracts.subjects import (
    DEADLETTER_STREAM, DEADLETTER_SUBJECTS, HEADER_CONSUMER, HEADER_DEAD_LETTERED_AT, HEADER_DELIVERIES, HEADER_ERROR,
    HEADER_ORIGINAL_SIZE, HEADER_ORIGINAL_SUBJECT, HEADER_TRUNCATED, REPORTS_STREAM, SubjectError, dead_letter_consumer,
    dead_letter_subject, is_event_subject, report_sender, storage_report_volume,
)

__all__ = ["ALL_DEAD_LETTERS", "DeadLetter", "NotReplayableError", "check_consumer", "count", "drop", "entries",
           "entry", "replay"]

ALL_DEAD_LETTERS = DEADLETTER_SUBJECTS[0]


class NotReplayableError(Exception):
    """Raised when an entry cannot be published again; the message says why."""


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of the dead-letter stream."""

    seq: int
    consumer: str
    subject: str
    """The subject the message was consumed from."""
    reason: str
    deliveries: int | None
    """How many times the consumer got it (None when not recorded)."""
    dead_lettered_at: dt.datetime | None
    headers: dict[str, str]
    data: bytes


def _entry(msg: RawStreamMsg) -> DeadLetter:
    headers = {str(k): str(v) for k, v in (msg.headers or {}).items()}
    subject = msg.subject or ""
    deliveries = headers.get(HEADER_DELIVERIES, "")
    stamped = headers.get(HEADER_DEAD_LETTERED_AT)
    return DeadLetter(
        seq=msg.seq or 0,
        consumer=headers.get(HEADER_CONSUMER) or dead_letter_consumer(subject),
        subject=headers.get(HEADER_ORIGINAL_SUBJECT, ""),
        reason=headers.get(HEADER_ERROR, ""),
        deliveries=int(deliveries) if deliveries.isdigit() and int(deliveries) > 0 else None,
        dead_lettered_at=_parse_time(stamped) or msg.time,
        headers=headers,
        data=msg.data or b"",
    )


def _parse_time(raw: str | None) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def check_consumer(consumer: str) -> str:
    """Returns ``consumer`` when it is a consumer name; raises SubjectError otherwise."""
    dead_letter_subject(consumer)
    return consumer


def _filter(consumer: str | None) -> str:
    """Returns the subject filter of ``consumer``'s entries (all when None); raises SubjectError
    for a consumer name that is not a subject token."""
    return ALL_DEAD_LETTERS if consumer is None else dead_letter_subject(consumer)


async def count(js: JetStreamContext, consumer: str | None = None) -> int:
    """Returns how many entries there are (of ``consumer``, or all)."""
    try:
        info = await js.stream_info(DEADLETTER_STREAM, subjects_filter=_filter(consumer))
    except NotFoundError:
        return 0
    return sum((info.state.subjects or {}).values())


async def entries(js: JetStreamContext, consumer: str | None = None, *, after: int = 0, limit: int = 100) -> list[DeadLetter]:
    """Returns at most ``limit`` entries (of ``consumer``, or all) with a sequence above ``after``, oldest first."""
    subject = _filter(consumer)
    found: list[DeadLetter] = []
    seq = after + 1
    while len(found) < limit:
        try:
            msg = await js.get_msg(DEADLETTER_STREAM, seq=seq, subject=subject, next=True)
        except NotFoundError:
            break
        found.append(_entry(msg))
        seq = (msg.seq or seq) + 1
    return found


async def entry(js: JetStreamContext, seq: int) -> DeadLetter | None:
    """Returns entry ``seq``, None when there is none (dropped, replayed, or never)."""
    try:
        return _entry(await js.get_msg(DEADLETTER_STREAM, seq=seq))
    except NotFoundError:
        return None


def _report_subject(subject: str) -> None:
    """Returns when ``subject`` is an agent's or a storage volume's report subject; SubjectError otherwise."""
    try:
        report_sender(subject)
    except SubjectError:
        storage_report_volume(subject)


async def replay(js: JetStreamContext, letter: DeadLetter) -> None:
    """Publishes ``letter`` again on its original subject, then deletes it (see the module's
    docstring); raises NotReplayableError for an event or an entry without a report subject."""
    if letter.headers.get(HEADER_TRUNCATED) == "true":  # only its first bytes were kept: it would fail again
        raise NotReplayableError(f"only the first {len(letter.data)} of its {letter.headers.get(HEADER_ORIGINAL_SIZE)} "
                                 "bytes were kept (it was too large to dead-letter whole): drop it")
    try:
        _report_subject(letter.subject)
    except SubjectError as exc:
        if is_event_subject(letter.subject):
            raise NotReplayableError(
                f"{letter.subject} is an event: it is never published again (every consumer of EVENTS would get it "
                "twice); drop it once its cause is dealt with") from exc
        raise NotReplayableError(f"no report subject to replay it on ({letter.subject or 'none recorded'})") from exc
    await js.publish(letter.subject, letter.data, stream=REPORTS_STREAM,
                     headers={Header.MSG_ID.value: f"dlq-replay:{letter.seq}"})
    await drop(js, letter.seq)


async def drop(js: JetStreamContext, seq: int) -> bool:
    """Deletes entry ``seq``; returns False when it was not there."""
    try:
        return await js.delete_msg(DEADLETTER_STREAM, seq)
    except NotFoundError:
        return False
