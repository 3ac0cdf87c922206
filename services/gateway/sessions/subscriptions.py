"""Subscriptions: a session's events live from JetStream, resumable by event-store position."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator

import strawberry
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from contracts.catalog import decode_event
from contracts.subjects import EVENTS_STREAM, HEADER_POSITION, SubjectError, session_events_filter
from services.gateway.context import Info, caller
from services.gateway.errors import BAD_INPUT, GatewayError
from services.gateway.sessions.ownership import owned_session
from services.gateway.sessions.refs import resolve_session_id
from services.gateway.sessions.types import EventRecord

__all__ = ["Subscription", "record_of"]

log = logging.getLogger(__name__)


def record_of(msg: Msg) -> EventRecord | None:
    """Returns the event carried by a message of the EVENTS stream, None when it has no position."""
    raw = (msg.headers or {}).get(HEADER_POSITION)
    if raw is None or not raw.isdigit():
        log.warning("skipping %s: no %s header", msg.subject, HEADER_POSITION)
        return None
    event = decode_event(msg.data)
    return EventRecord(
        position=int(raw), type=event.type_name(), aggregate_id=event.originator_id,
        aggregate_version=event.originator_version, occurred_at=event.timestamp, actor=event.metadata.actor,
        correlation_id=event.metadata.correlation_id, causation_id=event.metadata.causation_id,
        payload=msg.data.decode(),
    )


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="The events of one of your sessions (`sessionId`: its id, a unique id prefix or its name), from "
        "the start (skipping positions <= fromPosition), then live."
    )
    async def session_events(
        self, info: Info, session_id: str, from_position: int | None = 0
    ) -> AsyncGenerator[EventRecord, None]:
        caller(info)
        resources = info.context.resources
        session_id = await resolve_session_id(info, session_id)
        try:
            subject = session_events_filter(session_id)
        except SubjectError as exc:
            raise GatewayError(BAD_INPUT, str(exc)) from exc
        await owned_session(info, session_id)
        js = await resources.jetstream()
        sub = await js.subscribe(
            subject, stream=EVENTS_STREAM, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        try:
            async for msg in sub.messages:
                record = record_of(msg)
                if record is not None and record.position > (from_position or 0):
                    yield record
        finally:
            await sub.unsubscribe()
