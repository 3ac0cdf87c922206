"""The dead-letter stream as a queue an operator works through (JetStream only, no GraphQL).

Every message a consumer gave up is in ``DEADLETTER`` on ``dlq.<consumer>`` (an agent's report on
``dlq.<consumer>.<agent id>``, so that one agent fills only its own share; a consumer's entries are those of both)
with its error, the subject it was consumed from, the delivery count, the consumer and the time in headers
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
``berth projections rebuild`` re-applies events to the read models). Only a letter a service wrote is replayed:
an agent may publish on its own dead-letter subject (``dlq.agent-<id>``) whatever it likes, headers included, and a
``Berth-Original-Subject`` of another agent's report would have had the gateway publish that report for it; an
agent's own letters are of events anyway. A letter's consumer is its subject's, never its headers' word.
"""

from __future__ import annotations

import datetime as dt

import msgspec
from nats.js import JetStreamContext
from nats.js.api import Header, RawStreamMsg
from nats.js.errors import NotFoundError

from contracts.subjects import (
    DEADLETTER_STREAM, DEADLETTER_SUBJECTS, HEADER_CONSUMER, HEADER_DEAD_LETTERED_AT, HEADER_DELIVERIES, HEADER_ERROR,
    HEADER_ORIGINAL_SHA256, HEADER_ORIGINAL_SIZE, HEADER_ORIGINAL_SUBJECT, HEADER_TRUNCATED, REPORTS_STREAM,
    SubjectError, dead_letter_consumer, dead_letter_filters, dead_letter_subject, is_event_subject, report_sender,
    storage_report_volume,
)
from services.common.bus import DEADLETTER_KEPT_BYTES
from services.common.bus_identities import AGENT_IDENTITY

__all__ = ["ALL_DEAD_LETTERS", "DeadLetter", "NotReplayableError", "check_consumer", "count", "drop", "entries",
           "entry", "replay"]

ALL_DEAD_LETTERS = DEADLETTER_SUBJECTS[0]
_AGENT_WRITTEN = AGENT_IDENTITY.format(agent_id="")
"""How the consumer of a dead-letter subject an agent may publish on begins (``dlq.agent-<id>``: its own)."""


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
    stored_on: str = ""
    """The dead-letter subject it is stored on (who could write it: ``dlq.agent-<id>`` that agent)."""

    @property
    def cut(self) -> bool:
        """Returns True when only the beginning of the message was kept (``services.common.bus.dead_letter_body``:
        it was over ``DEADLETTER_KEPT_BYTES``, or too large with the headers): it cannot be replayed."""
        return self.headers.get(HEADER_TRUNCATED) == "true"

    @property
    def original_size(self) -> int:
        """Returns the bytes of the message the consumer gave up: more than those kept when the letter is ``cut``."""
        recorded = self.headers.get(HEADER_ORIGINAL_SIZE, "")
        return int(recorded) if self.cut and recorded.isdigit() else len(self.data)

    @property
    def agent_written(self) -> bool:
        """Returns True when an agent could have written this letter, headers and all (its own subject)."""
        return dead_letter_consumer(self.stored_on).startswith(_AGENT_WRITTEN)


def _entry(msg: RawStreamMsg) -> DeadLetter:
    headers = {str(k): str(v) for k, v in (msg.headers or {}).items()}
    subject = msg.subject or ""
    deliveries = headers.get(HEADER_DELIVERIES, "")
    stamped = headers.get(HEADER_DEAD_LETTERED_AT)
    return DeadLetter(
        seq=msg.seq or 0,
        consumer=dead_letter_consumer(subject) or headers.get(HEADER_CONSUMER, ""),
        subject=headers.get(HEADER_ORIGINAL_SUBJECT, ""),
        reason=headers.get(HEADER_ERROR, ""),
        deliveries=int(deliveries) if deliveries.isdigit() and int(deliveries) > 0 else None,
        dead_lettered_at=_parse_time(stamped) or msg.time,
        headers=headers,
        data=msg.data or b"",
        stored_on=subject,
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


async def count(js: JetStreamContext, consumer: str | None = None) -> int:
    """Returns how many entries there are (of ``consumer``, whatever the sender, or all)."""
    total = 0
    for subject in dead_letter_filters(consumer):
        try:
            info = await js.stream_info(DEADLETTER_STREAM, subjects_filter=subject)
        except NotFoundError:
            return 0
        total += sum((info.state.subjects or {}).values())
    return total


async def entries(js: JetStreamContext, consumer: str | None = None, *, after: int = 0, limit: int = 100) -> list[DeadLetter]:
    """Returns at most ``limit`` entries (of ``consumer``, whatever the sender, or all) with a sequence above
    ``after``, oldest first: the next entry of each of the consumer's filters (``dead_letter_filters``), merged."""
    heads = {subject: await _next(js, subject, after + 1) for subject in dead_letter_filters(consumer)}
    found: list[DeadLetter] = []
    while len(found) < limit:
        waiting = [(msg.seq or 0, subject, msg) for subject, msg in heads.items() if msg is not None]
        if not waiting:
            break
        seq, subject, msg = min(waiting, key=lambda head: head[0])
        found.append(_entry(msg))
        heads[subject] = await _next(js, subject, seq + 1)
    return found


async def _next(js: JetStreamContext, subject: str, seq: int) -> RawStreamMsg | None:
    """Returns the first entry on ``subject`` (a filter) from sequence ``seq`` on, None when there is none."""
    try:
        return await js.get_msg(DEADLETTER_STREAM, seq=seq, subject=subject, next=True)
    except NotFoundError:
        return None


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
    if letter.cut:  # only its first bytes were kept: published, they would not be the message
        raise NotReplayableError(
            f"only the first {len(letter.data)} of its {letter.original_size} bytes were kept (it was too large to "
            f"dead-letter whole: a letter keeps at most {DEADLETTER_KEPT_BYTES} bytes of a message; SHA-256 "
            f"{letter.headers.get(HEADER_ORIGINAL_SHA256, 'not recorded')}): it cannot be replayed; drop it")
    try:
        _report_subject(letter.subject)
    except SubjectError as exc:
        if is_event_subject(letter.subject):
            raise NotReplayableError(
                f"{letter.subject} is an event: it is never published again (every consumer of EVENTS would get it "
                "twice); drop it once its cause is dealt with") from exc
        raise NotReplayableError(f"no report subject to replay it on ({letter.subject or 'none recorded'})") from exc
    if letter.agent_written:
        raise NotReplayableError(f"it is stored on {letter.stored_on}, which its agent may write whatever it likes "
                                 "(the original subject included): only letters a service wrote are replayed; drop it")
    await js.publish(letter.subject, letter.data, stream=REPORTS_STREAM,
                     headers={Header.MSG_ID.value: f"dlq-replay:{letter.seq}"})
    await drop(js, letter.seq)


async def drop(js: JetStreamContext, seq: int) -> bool:
    """Deletes entry ``seq``; returns False when it was not there."""
    try:
        return await js.delete_msg(DEADLETTER_STREAM, seq)
    except NotFoundError:
        return False
