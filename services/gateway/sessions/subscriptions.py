"""Subscriptions: a session's events live from JetStream, resumable by event-store position, and
its status updates, derived from those events by ``projections.session_status`` (the one
derivation the read models use too)."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator

import strawberry
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from contracts.catalog import decode_event
from contracts.subjects import EVENTS_STREAM, HEADER_POSITION, SubjectError, session_events_filter
from projections.session_status import SessionStatusView, evolve_status
from services.gateway.context import Info, caller
from services.gateway.errors import BAD_INPUT, GatewayError
from services.gateway.sessions.refs import resolve_owned_session
from services.gateway.sessions.types import EventRecord, SessionStatusUpdate
from services.gateway.subscription_guard import subscription_slot

__all__ = ["Subscription", "record_of"]

log = logging.getLogger(__name__)


def _position(msg: Msg) -> int | None:
    raw = (msg.headers or {}).get(HEADER_POSITION)
    if raw is None or not raw.isdigit():
        log.warning("skipping %s: no %s header", msg.subject, HEADER_POSITION)
        return None
    return int(raw)


def record_of(msg: Msg) -> EventRecord | None:
    """Returns the event carried by a message of the EVENTS stream, None when it has no position."""
    position = _position(msg)
    if position is None:
        return None
    event = decode_event(msg.data)
    return EventRecord(
        position=position, type=event.type_name(), aggregate_id=event.originator_id,
        aggregate_version=event.originator_version, occurred_at=event.timestamp, actor=event.metadata.actor,
        correlation_id=event.metadata.correlation_id, causation_id=event.metadata.causation_id,
        payload=msg.data.decode(),
    )


async def _session_messages(info: Info, session_ref: str) -> AsyncIterator[tuple[str, Msg]]:
    """Yields the id of the session ``session_ref`` means, with each message of its events on the
    EVENTS stream, from the first, then live; NOT_FOUND unless the caller may see it."""
    caller(info)
    resources = info.context.resources
    session_id = (await resolve_owned_session(info, session_ref)).id
    try:
        subject = session_events_filter(session_id)
    except SubjectError as exc:
        raise GatewayError(BAD_INPUT, str(exc)) from exc
    async with subscription_slot(info):  # one of the caller's concurrent subscriptions while it runs
        js = await resources.jetstream()
        sub = await js.subscribe(
            subject, stream=EVENTS_STREAM, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        try:
            async for msg in sub.messages:
                yield session_id, msg
        finally:
            await sub.unsubscribe()


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="The events of one of your sessions (`sessionId`: its id, a unique id prefix or its name), from "
        "the start (skipping positions <= fromPosition), then live."
    )
    async def session_events(
        self, info: Info, session_id: str, from_position: int | None = 0
    ) -> AsyncGenerator[EventRecord, None]:
        messages = _session_messages(info, session_id)
        try:
            async for _, msg in messages:
                record = record_of(msg)
                if record is not None and record.position > (from_position or 0):
                    yield record
        finally:
            await messages.aclose()

    @strawberry.subscription(
        description="The status of one of your sessions (`sessionId`: its id, a unique id prefix or its name): its "
        "status so far, then each change of its status, reason or detail (an image pull's progress while PREPARING, "
        "the cause of a failed start), derived from its events as the read models derive it; ends after a final "
        "status (TERMINATED, CANCELLED, ERROR)."
    )
    async def session_status(self, info: Info, session_id: str) -> AsyncGenerator[SessionStatusUpdate, None]:
        messages = _session_messages(info, session_id)
        view: SessionStatusView | None = None
        try:
            async for resolved, msg in messages:
                position = _position(msg)
                if position is None:
                    continue
                event = decode_event(msg.data)
                new = evolve_status(view, event)
                if new is None or new == view:
                    continue
                view = new
                yield SessionStatusUpdate.of(resolved, position, event.timestamp, view)
                if view.status.is_terminal:
                    return
        finally:
            await messages.aclose()
