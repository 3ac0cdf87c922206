"""The storage service's event flow: the durable consumer ``storage-<volume>`` on every folder
event (``ev.vfolder.>``), one per volume this process serves. ``VFolderCreated``,
``VFolderTrashed``, ``VFolderRestored`` and ``VFolderPurgeRequested`` are carried out by
``Provisioner`` (only for folders of its volume); the other folder events need nothing from storage."""

from __future__ import annotations

from contracts import vfolder as ev
from contracts.subjects import EVENTS_STREAM
from services.common.flow import Subscription, skip
from services.storage.provisioning import Provisioner

__all__ = ["ATTEMPTS", "FLOW", "FOLDERS"]

ATTEMPTS = 5
"""Deliveries of one folder event before it is given up (a provisioning reports its failure)."""

_HANDLED = {ev.VFolderCreated: Provisioner.created, ev.VFolderTrashed: Provisioner.trashed,
            ev.VFolderRestored: Provisioner.restored, ev.VFolderPurgeRequested: Provisioner.purge_requested}

FOLDERS = Subscription(
    name="storage-{volume}",
    stream=EVENTS_STREAM,
    durable=True,
    max_deliver=ATTEMPTS,
    routes={**{cls: skip for cls in ev.ALL_VFOLDER_EVENTS if cls.type_name().startswith("vfolder.")}, **_HANDLED},
    description="Folder events: directories to create (or clone) and to delete on this volume.",
)

FLOW = (FOLDERS,)
