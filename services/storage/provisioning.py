"""Carries out the folder events that concern a volume: a created folder gets its directory (a
clone: a copy of its source), a purge request deletes it; each is reported.

Idempotent and crash-safe: the folder is first marked as this volume's (``PosixVolume.claim``),
then the step is done (each step is itself idempotent), then the report is stored with a report
id fixed per folder and step, so a redelivered event redoes what is missing and a report sent
twice is stored once (JetStream dedup) and is a no-op at the controller. A failure that persists
to the last delivery reports ``folder_provision_failed`` with the reason instead of dead-lettering.

A user whose access to a folder is taken back (unshared, left, its permission lowered) has the tokens issued
to it before refused (``revocations``), and its unfinished uploads into the folder dropped when it may no
longer upload.

A folder moved to the trash is closed (``PosixVolume.close``: a mark under ``.work``, so it survives
a restart): every request with a token of it is refused from then on — tokens issued before the trash
included — and its unfinished uploads are dropped; a restore opens it again. A purge leaves it closed.

The events of different folders are carried out at the same time (``flow.FOLDERS``: a lane per folder,
``flow.folder_lane``), so the long jobs — a clone copying tens of GB, a purge of a large tree — take
minutes for their own folder only. ``LONG_JOBS_AT_ONCE`` of them run at once per volume, the others wait
for a place; a clone starts copying only when the disk has room for its source beside what the clones
being copied may still write (their sources' sizes): while they take the room it waits for one to end,
and it is refused (``NoSpaceError``) only when the disk has no room for it even alone — as when clones
were copied one after the other.
"""

from __future__ import annotations

import asyncio
import logging

from contracts.storage_reports import (
    FolderProvisionedReport,
    FolderProvisionFailedReport,
    FolderPurgedReport,
)
from contracts.vfolder import (
    VFolderCreated,
    VFolderLeft,
    VFolderPermissionChanged,
    VFolderPurgeRequested,
    VFolderRestored,
    VFolderTrashed,
    VFolderUnshared,
)
from services.storage.reporting import Reporter, now_utc
from services.storage.revocations import revoked_ops
from services.storage.space import NoSpaceError, ensure_room
from services.storage.uploads import UploadStore
from services.storage.usage import UsageMeter
from services.storage.volume import PosixVolume, VolumeError

__all__ = ["LONG_JOBS_AT_ONCE", "Provisioner"]

log = logging.getLogger(__name__)

LONG_JOBS_AT_ONCE = 4
"""Clones and purges of one volume carried out at once, each in a worker thread (the data plane's file
reads share the pool of those threads); the others wait for a place."""


class Provisioner:
    """Provisions, closes (in the trash), reopens and purges the folders of one volume."""

    def __init__(self, volume: PosixVolume, reporter: Reporter, meter: UsageMeter, uploads: UploadStore) -> None:
        self.volume = volume
        self._reporter = reporter
        self._meter = meter
        self._uploads = uploads
        self._long_jobs = asyncio.Semaphore(LONG_JOBS_AT_ONCE)
        self._copying: dict[str, int] = {}
        """The bytes of the source of each clone being copied, by folder."""
        self._copies = asyncio.Condition()
        """Held by one clone's admission at a time (``_admit``); notified when a copy ends."""

    def _id(self, folder_id: str, step: str) -> str:
        return f"{self.volume.name}:{folder_id}:{step}"

    async def created(self, event: VFolderCreated, *, last_attempt: bool = False) -> None:
        if event.volume != self.volume.name:
            return
        folder = event.originator_id
        try:
            if event.clone_of:
                await self._clone(folder, event.clone_of)
            else:
                await asyncio.to_thread(self._create, folder)
        except VolumeError as exc:  # the source is not here: retrying cannot help
            await self._failed(folder, str(exc))
            return
        except OSError as exc:
            if not last_attempt:
                raise
            await self._failed(folder, f"{type(exc).__name__}: {exc}")
            return
        await self._reporter.send(FolderProvisionedReport(
            report_id=self._id(folder, "provisioned"), volume=self.volume.name, folder_id=folder,
            observed_at=now_utc()))
        log.info("folder %s provisioned on %s%s", folder, self.volume.name,
                 f" (clone of {event.clone_of})" if event.clone_of else "")
        await self._meter.measure(self.volume, folder)

    def _create(self, folder: str) -> None:
        self.volume.claim(folder)
        self.volume.create(folder)

    async def _clone(self, folder: str, source: str) -> None:
        """Copies ``source`` into ``folder`` as one of the long jobs, once the disk has room for it (``_admit``)."""
        async with self._long_jobs:
            size = await asyncio.to_thread(self._source_size, folder, source)
            await self._admit(folder, source, size)
            try:
                await asyncio.to_thread(self.volume.clone, source, folder)
            finally:
                async with self._copies:
                    del self._copying[folder]
                    self._copies.notify_all()

    def _source_size(self, folder: str, source: str) -> int:
        self.volume.claim(folder)
        if not self.volume.exists(source):
            raise VolumeError(f"the source folder {source} is not on volume {self.volume.name}")
        return self.volume.usage(source)[0]

    async def _admit(self, folder: str, source: str, size: int) -> None:
        """Counts ``folder`` among the clones being copied once the disk has room for ``size`` bytes beside
        what they may still write; while only they take the room, waits for one to end; ``NoSpaceError``
        when it has no room even with none of them."""
        async with self._copies:  # one admission at a time: two never count the same room
            while True:
                others = sum(self._copying.values())
                try:
                    await asyncio.to_thread(ensure_room, self.volume.root, size + others, f"a clone of {source}")
                except NoSpaceError:
                    if not others:
                        raise
                    await self._copies.wait()
                    continue
                self._copying[folder] = size
                return

    async def _failed(self, folder: str, reason: str) -> None:
        log.warning("folder %s could not be provisioned on %s: %s", folder, self.volume.name, reason)
        await self._reporter.send(FolderProvisionFailedReport(
            report_id=self._id(folder, "provision_failed"), volume=self.volume.name, folder_id=folder,
            observed_at=now_utc(), reason=reason[:2000]))

    async def trashed(self, event: VFolderTrashed, *, last_attempt: bool = False) -> None:
        """Closes the folder to every token, issued before or after, and drops its unfinished uploads."""
        folder = event.originator_id
        if self.volume.owns(folder):
            await asyncio.to_thread(self._close, folder)

    def _close(self, folder: str) -> None:
        self.volume.close(folder, True)
        if dropped := self._uploads.terminate_folder(folder):
            log.info("folder %s in the trash: %d unfinished upload(s) dropped", folder, dropped)

    async def restored(self, event: VFolderRestored, *, last_attempt: bool = False) -> None:
        folder = event.originator_id
        if self.volume.owns(folder):
            await asyncio.to_thread(self.volume.close, folder, False)

    async def access_changed(self, event: VFolderUnshared | VFolderLeft | VFolderPermissionChanged, *,
                             last_attempt: bool = False) -> None:
        """Refuses the tokens a user was issued before its access was taken back (``revocations``): all of them when
        the folder is no longer shared with it, those of the operations its new permission lacks when lowered;
        drops its unfinished uploads into the folder when it may no longer upload."""
        folder = event.originator_id
        if self.volume.owns(folder):
            permission = event.permission if isinstance(event, VFolderPermissionChanged) else None
            await asyncio.to_thread(self._revoke, folder, event.user, revoked_ops(permission),
                                    int(event.timestamp.timestamp()))

    def _revoke(self, folder: str, user: str, ops: frozenset[str], at: int) -> None:
        self.volume.revocations.revoke(folder, user, ops, at)
        if "upload" in ops and (dropped := self._uploads.terminate_folder(folder, user)):
            log.info("folder %s: %s's access taken back, %d unfinished upload(s) dropped", folder, user, dropped)

    async def purge_requested(self, event: VFolderPurgeRequested, *, last_attempt: bool = False) -> None:
        folder = event.originator_id
        if not self.volume.owns(folder):
            return  # another volume's folder
        async with self._long_jobs:
            await asyncio.to_thread(self.volume.delete, folder)
        await asyncio.to_thread(self.volume.revocations.forget, folder)
        await self._reporter.send(FolderPurgedReport(
            report_id=self._id(folder, "purged"), volume=self.volume.name, folder_id=folder, observed_at=now_utc()))
        self._meter.forget(folder)
        log.info("folder %s purged from %s", folder, self.volume.name)
