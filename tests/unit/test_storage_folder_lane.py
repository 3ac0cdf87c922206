"""The storage service's folder events are carried out in lanes (``services.storage.flow.folder_lane``): a
folder's own events in its lane, a clone's creation in its source's (the source's trash and purge after the copy)."""

from __future__ import annotations

import datetime as dt
import uuid

from contracts.envelope import Metadata
from contracts.vfolder import OwnerKind, VFolderCreated, VFolderPurgeRequested, new_folder_id
from services.storage.flow import FOLDERS, folder_lane


def _envelope(folder: str, version: int) -> dict:
    return {"event_id": uuid.uuid4(), "originator_id": folder, "originator_version": version,
            "timestamp": dt.datetime.now(dt.UTC), "metadata": Metadata(actor="test", correlation_id="c")}


def created(folder: str, clone_of: str | None = None) -> VFolderCreated:
    return VFolderCreated(**_envelope(folder, 1), name="f", volume="local", owner_kind=OwnerKind.USER, owner="alice",
                          domain="default", quota_scope="user:alice", clone_of=clone_of, by="alice")


def purge(folder: str) -> VFolderPurgeRequested:
    return VFolderPurgeRequested(**_envelope(folder, 3), by="alice")


def test_a_clone_is_created_in_its_sources_lane_and_every_other_event_in_its_folders() -> None:
    assert FOLDERS.batch > 1 and FOLDERS.concurrent_by is folder_lane
    source, clone = new_folder_id(), new_folder_id()
    assert folder_lane(created(source)) == folder_lane(purge(source)) == source
    assert folder_lane(created(clone, clone_of=source)) == source
    assert folder_lane(purge(clone)) == clone
