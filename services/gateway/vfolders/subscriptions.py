"""Subscription ``vfolderEvents``: a folder's events from JetStream, from the first (skipping
positions <= fromPosition), then live; for anyone who may see the folder, while they may.

Access is decided on the event store's state of the folder, as every folder resolver decides it
(``domain.vfolder.access``): when the subscription starts, and again whenever an event that changes
who may see the folder arrives (``ACCESS_CHANGES``) later than the state last decided on. A subscriber
who may no longer see it (unshared, left) gets NOT_FOUND, as the rest of the folder API answers, and
nothing more: the stream ends there. The events that name whom the folder is shared with or who is
invited to it (``NAMING_USERS``) go only to its managers, as ``VFolder.shares`` does.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import NamedTuple

import strawberry
from nats.js.api import DeliverPolicy

from contracts import vfolder as ev
from contracts.catalog import decode_event
from contracts.envelope import Event
from contracts.subjects import EVENTS_STREAM, HEADER_POSITION, vfolder_events_filter
from domain.vfolder.access import may_manage, may_see
from services.gateway.context import Info
from services.gateway.errors import NOT_FOUND, GatewayError
from services.gateway.subscription_guard import subscription_slot
from services.gateway.vfolders.access import acting, load_folder
from services.gateway.vfolders.types import VFolderEvent

__all__ = ["ACCESS_CHANGES", "NAMING_USERS", "VFolderSubscription"]

log = logging.getLogger(__name__)

ACCESS_CHANGES: tuple[type[Event], ...] = (
    ev.VFolderShared, ev.VFolderUnshared, ev.VFolderLeft, ev.VFolderPermissionChanged, ev.VFolderInvitationAccepted,
    ev.VFolderTrashed, ev.VFolderRestored, ev.VFolderPurgeRequested, ev.VFolderPurged,
)
"""Events after which the subscriber's access is decided again, before that event or any later one is delivered."""
NAMING_USERS: tuple[type[Event], ...] = (
    ev.VFolderShared, ev.VFolderUnshared, ev.VFolderInvited, ev.VFolderInvitationAccepted,
    ev.VFolderInvitationRejected, ev.VFolderInvitationWithdrawn, ev.VFolderLeft, ev.VFolderPermissionChanged,
)
"""Events naming whom the folder is shared with or who is invited to it: for the folder's managers only."""


class _Access(NamedTuple):
    """The subscriber's access to one folder, as decided on the folder's state at ``version``."""

    version: int
    manages: bool


async def _decided(info: Info, folder_id: str) -> _Access | None:
    """Returns the caller's access to the folder decided afresh (the caller and the folder as the event store has
    them now); None when the caller may no longer see it."""
    actor = await acting(info)
    resources = info.context.resources
    state, actor = await resources.call(resources.vfolders.get_as, folder_id, actor)
    if state is None or not may_see(state, actor):
        return None
    return _Access(state.version, may_manage(state, actor))


@strawberry.type
class VFolderSubscription:
    @strawberry.subscription(description="The events of a folder you see (by id or name): from the start, skipping "
                             "positions <= fromPosition, then live; ends with NOT_FOUND once you may no longer see "
                             "it. Sharing and invitation events only for the folder's managers.")
    async def vfolder_events(self, info: Info, folder: str,
                             from_position: int | None = 0) -> AsyncGenerator[VFolderEvent, None]:
        actor = await acting(info)
        state = await load_folder(info, actor, folder)
        access = _Access(state.version, may_manage(state, actor))
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
                    if isinstance(event, ACCESS_CHANGES) and event.originator_version > access.version:
                        decided = await _decided(info, state.id)
                        if decided is None:
                            log.info("vfolderEvents of %s ended: %s may no longer see it", state.id, actor.user)
                            raise GatewayError(NOT_FOUND, f"folder {folder!r} not found: it is no longer visible "
                                                          "to you")
                        access = decided
                    if isinstance(event, NAMING_USERS) and not access.manages:
                        continue
                    yield VFolderEvent(position=int(raw), type=event.type_name(), folder_id=event.originator_id,
                                       version=event.originator_version, occurred_at=event.timestamp,
                                       actor=event.metadata.actor, payload=msg.data.decode())
            finally:
                await sub.unsubscribe()
