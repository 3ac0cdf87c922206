"""The relay's side of JetStream: where the EVENTS stream stands, and pipelined publishing.

Each event is published with ``Nats-Msg-Id`` and ``Berth-Position`` = its notification id,
and chained to the previous one with ``Nats-Expected-Last-Msg-Id``: if one publish of a
pipelined batch fails, every later one fails too, so the stream never has a gap. The
server checks duplicates before that expectation (a re-sent event is acknowledged as a
duplicate, not refused). The first publish after a (re)sync expects the stream's last
sequence instead, since the last message may carry no id.

Publishing is pipelined like nats-py's ``publish_async`` (every message is sent at once,
then the acks are awaited), but with our own reply inbox: nats-py 2.16 never resolves a
``publish_async`` future when the server refuses a message (``APIError.from_error`` raises
inside its reply handler), so a refused publish would only show up as a timeout.

The relay stays on nats-py rather than faststream (on which the services' consumers are
declared, ``services/common/flow.py``): faststream's publishers await one ack per message
(≈5k msg/s here) and have no asynchronous-ack publish, while this pipelined publisher
reaches ≈20-40k msg/s; and the relay consumes nothing from NATS, so it has no flow table.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import NamedTuple, Sequence

from eventsourcing.persistence import Notification
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import BadSubjectError, MaxPayloadError
from nats.js.api import Header

from contracts.subjects import HEADER_ERROR, HEADER_POSITION, SubjectError, event_subject, invalid_event_subject
from services.common.event_stream import StreamCursor, read_cursor

__all__ = [
    "Ack",
    "InFlight",
    "PipelinedPublisher",
    "PublishError",
    "StreamCursor",
    "UnpublishableError",
    "publish_batch",
    "read_cursor",
    "send_batch",
    "subject_of",
]

log = logging.getLogger(__name__)


MESSAGE_TOO_LARGE = 10054
"""JetStream's error code for a message over the stream's (or the server's) maximum size."""


class PublishError(RuntimeError):
    """Raised when a batch was not fully acknowledged; the stream is the truth: re-read it.
    ``code`` is JetStream's error code when the server refused a message."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class UnpublishableError(PublishError):
    """Raised when NATS refuses an event for good (too large, invalid subject): publishing it
    again cannot succeed, and nothing after it may be published before it."""

    def __init__(self, notification: Notification, reason: str) -> None:
        super().__init__(f"event {notification.id} ({notification.topic} of {notification.originator_id!r}) "
                         f"cannot be published: {reason}")
        self.notification_id = notification.id
        self.aggregate_id = notification.originator_id
        self.topic = notification.topic
        self.reason = reason


def subject_of(notification: Notification) -> tuple[str, dict[str, str]]:
    """Returns the subject of a stored event and any extra headers.

    An event whose topic or id cannot form a subject (never produced by the domain) is
    published under ``contracts.subjects.invalid_event_subject`` with a ``Berth-Error`` header, so the stream
    keeps every position; the projector dead-letters it.
    """
    try:
        return event_subject(notification.topic, notification.originator_id), {}
    except (SubjectError, IndexError) as exc:
        log.error("event %d (%s) has no valid subject: %s", notification.id, notification.topic, exc)
        return invalid_event_subject(notification.id), {HEADER_ERROR: f"no valid subject: {exc}"[:1000]}


class Ack(NamedTuple):
    """The stream's acknowledgement of one message."""

    seq: int
    duplicate: bool


class PipelinedPublisher:
    """Publishes to JetStream without waiting, one future per message, resolved by the ack
    or by the server's refusal."""

    def __init__(self, nc: Client) -> None:
        """Uses ``nc``; ``start`` subscribes to the reply inbox."""
        self._nc = nc
        self._prefix = ""
        self._tokens = itertools.count(1)
        self._pending: dict[str, asyncio.Future[Ack]] = {}
        self._sub: Subscription | None = None

    @property
    def max_payload(self) -> int:
        """Returns the largest payload the server takes (bytes)."""
        return self._nc.max_payload

    async def start(self) -> None:
        """Subscribes to the reply inbox."""
        self._prefix = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_reply)

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> asyncio.Future[Ack]:
        """Sends one message; returns the future of its ack."""
        token = str(next(self._tokens))
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda _: self._pending.pop(token, None))
        self._pending[token] = future
        await self._nc.publish(subject, payload, reply=f"{self._prefix}.{token}", headers=headers)
        return future

    async def _on_reply(self, msg: Msg) -> None:
        future = self._pending.get(msg.subject[len(self._prefix) + 1 :])
        if future is None or future.done():
            return
        status = (msg.headers or {}).get("Status")
        if status:
            future.set_exception(PublishError(f"no stream answered (status {status})"))
            return
        try:
            reply = json.loads(msg.data)
        except ValueError:
            future.set_exception(PublishError(f"unreadable ack {msg.data[:200]!r}"))
            return
        error = reply.get("error")
        if error:
            code = error.get("err_code")
            future.set_exception(PublishError(f"refused: {error.get('description')} (code {code})", code))
        else:
            future.set_result(Ack(int(reply["seq"]), bool(reply.get("duplicate"))))


class InFlight(NamedTuple):
    """A sent batch: its notifications, their ack futures and the cursor once all are acked."""

    notifications: Sequence[Notification]
    futures: list[asyncio.Future[Ack]]
    cursor: StreamCursor

    async def confirmed(self, timeout: float) -> StreamCursor:
        """Waits for every ack and returns the new cursor; raises ``PublishError`` when any
        publish failed or ``timeout`` seconds passed."""
        try:
            async with asyncio.timeout(timeout):
                acks = await asyncio.gather(*self.futures, return_exceptions=True)
        except asyncio.TimeoutError as exc:
            self.cancel()
            raise PublishError(f"no ack for {len(self.futures)} events within {timeout} s") from exc
        for notification, ack in zip(self.notifications, acks):
            if isinstance(ack, PublishError) and ack.code == MESSAGE_TOO_LARGE:
                raise UnpublishableError(notification, f"the stream {ack}")
            if isinstance(ack, BaseException):
                raise PublishError(f"event {notification.id} was not stored: {ack}")
        return self.cursor._replace(last_seq=acks[-1].seq)

    def cancel(self) -> None:
        """Gives up waiting for the acks."""
        for future in self.futures:
            future.cancel()


async def send_batch(
    publisher: PipelinedPublisher, notifications: Sequence[Notification], cursor: StreamCursor
) -> InFlight:
    """Sends ``notifications`` pipelined, each chained to the previous one; returns them in
    flight. Raises ``PublishError`` when sending fails (nothing is awaited then), and
    ``UnpublishableError`` when NATS refuses an event for good (too large, invalid subject)."""
    futures: list[asyncio.Future[Ack]] = []
    last_msg_id, last_seq = cursor.last_msg_id, cursor.last_seq
    try:
        for notification in notifications:
            subject, headers = subject_of(notification)
            msg_id = str(notification.id)
            headers[Header.MSG_ID.value] = msg_id
            headers[HEADER_POSITION] = msg_id
            if last_msg_id is not None:
                headers[Header.EXPECTED_LAST_MSG_ID.value] = last_msg_id
            elif last_seq > 0:
                headers[Header.EXPECTED_LAST_SEQUENCE.value] = str(last_seq)
            try:
                futures.append(await publisher.publish(subject, notification.state, headers))
            except MaxPayloadError as exc:
                size = len(notification.state)
                raise UnpublishableError(notification, f"{size} bytes, over NATS max_payload "
                                                       f"({publisher.max_payload} bytes)") from exc
            except BadSubjectError as exc:
                raise UnpublishableError(notification, f"NATS refuses its subject {subject!r}") from exc
            last_msg_id = msg_id
    except UnpublishableError:
        for future in futures:
            future.cancel()
        raise
    except Exception as exc:
        for future in futures:
            future.cancel()
        raise PublishError(f"sending {len(notifications)} events failed: {type(exc).__name__}: {exc}") from exc
    return InFlight(notifications, futures, StreamCursor(notifications[-1].id, last_seq, last_msg_id))


async def publish_batch(
    publisher: PipelinedPublisher, notifications: Sequence[Notification], cursor: StreamCursor, ack_timeout: float
) -> StreamCursor:
    """Publishes ``notifications`` pipelined, waits for every ack and returns the new cursor;
    raises ``PublishError`` when any publish failed or timed out."""
    return await (await send_batch(publisher, notifications, cursor)).confirmed(ack_timeout)


