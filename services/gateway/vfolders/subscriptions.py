"""Subscription ``vfolderEvents``: a folder's events from JetStream, from the first (skipping
positions <= fromPosition), then live; for anyone who may see the folder."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator

import strawberry
from nats.js.api import DeliverPolicy

from contracts.catalog import decode_event
from contracts.subjects import EVENTS_STREAM, HEADER_POSITION, vfolder_events_filter
from services.gateway.context import Info
from services.gateway.subscription_guard import subscription_slot
from services.gateway.vfolders.access import acting, load_folder
from services.gateway.vfolders.types import VFolderEvent

__all__ = ["VFolderSubscription"]

log = logging.getLogger(__name__)


@strawberry.type
class VFolderSubscription:
    @strawberry.subscription(description="The events of a folder you see (by id or name): from the start, skipping "
                             "positions <= fromPosition, then live.")
    async def vfolder_events(self, info: Info, folder: str,
                             from_position: int | None = 0) -> AsyncGenerator[VFolderEvent, None]:
        actor = await acting(info)
        state = await load_folder(info, actor, folder)
        resources = info.context.resources
        async with subscription_slot(info):
            js = await resources.jetstream()
            sub = await js.subscribe(vfolder_events_filter(state.id), stream=EVENTS_STREAM, ordered_consumer=True,
                                     deliver_policy=DeliverPolicy.ALL)
            try:
                async for msg in sub.messages:
                    raw = (msg.headers or {}).get(HEADER_POSITION)
                    if raw is None or not raw.isdigit() or int(raw) <= (from_position or 0):
                        continue
                    event = decode_event(msg.data)
                    yield VFolderEvent(position=int(raw), type=event.type_name(), folder_id=event.originator_id,
                                       version=event.originator_version, occurred_at=event.timestamp,
                                       actor=event.metadata.actor, payload=msg.data.decode())
            finally:
                await sub.unsubscribe()
