"""The storage service's event flow: the durable consumer ``storage-<volume>`` on every folder
event (``ev.vfolder.>``), one per volume this process serves. ``VFolderCreated``,
``VFolderTrashed``, ``VFolderRestored``, ``VFolderPurgeRequested`` and the events that take access back from a
user (``VFolderUnshared``, ``VFolderLeft``, ``VFolderPermissionChanged``: its older tokens refused) are carried out
by ``Provisioner`` (only for folders of its volume); the other folder events need nothing from storage.

Up to ``FOLDERS_AT_ONCE`` events are held at once and carried out concurrently, one lane per folder
(``folder_lane``, ``services.common.lanes``): a clone of tens of GB or the purge of a large tree holds
back its own folder's events only, never another tenant's ``vfolder create``; each lane's events one
after the other in stream order, each acknowledged once its work is done and reported, its ack deadline
pushed back while it runs or waits (``Settler``, ``Lanes``), so a long one is not delivered again meanwhile."""

from __future__ import annotations

from contracts import vfolder as ev
from contracts.envelope import Event
from contracts.subjects import EVENTS_STREAM
from services.common.flow import Subscription, skip
from services.storage.provisioning import Provisioner

__all__ = ["ATTEMPTS", "FLOW", "FOLDERS", "FOLDERS_AT_ONCE", "folder_lane"]

ATTEMPTS = 5
"""Deliveries of one folder event before it is given up (a provisioning reports its failure)."""
FOLDERS_AT_ONCE = 32
"""Folder events held at once (waiting in their lane or for one of the ``provisioning.LONG_JOBS_AT_ONCE``
places of clones and purges, or being carried out); the next fetch waits only while that many are held."""


def folder_lane(event: Event) -> str:
    """The lane of a folder event: its folder's, but a clone's creation is in its source's lane, so that
    the source's later trash and purge wait for the copy (a purge during it would leave the clone with
    part of the files, reported provisioned). The clone's own later events cannot overtake its creation:
    a folder goes to the trash only once its provisioning was reported."""
    if isinstance(event, ev.VFolderCreated) and event.clone_of:
        return event.clone_of
    return event.originator_id


_HANDLED = {ev.VFolderCreated: Provisioner.created, ev.VFolderTrashed: Provisioner.trashed,
            ev.VFolderRestored: Provisioner.restored, ev.VFolderPurgeRequested: Provisioner.purge_requested,
            ev.VFolderUnshared: Provisioner.access_changed, ev.VFolderLeft: Provisioner.access_changed,
            ev.VFolderPermissionChanged: Provisioner.access_changed}

FOLDERS = Subscription(
    name="storage-{volume}",
    stream=EVENTS_STREAM,
    durable=True,
    max_deliver=ATTEMPTS,
    batch=FOLDERS_AT_ONCE,
    concurrent_by=folder_lane,
    routes={**{cls: skip for cls in ev.ALL_VFOLDER_EVENTS if cls.type_name().startswith("vfolder.")}, **_HANDLED},
    description="Folder events: directories to create (or clone) and to delete on this volume.",
)

FLOW = (FOLDERS,)
