"""Carries out the folder events that concern a volume: a created folder gets its directory (a
clone: a copy of its source), a purge request deletes it; each is reported.

Idempotent and crash-safe: the folder is first marked as this volume's (``PosixVolume.claim``),
then the step is done (each step is itself idempotent), then the report is stored with a report
id fixed per folder and step, so a redelivered event redoes what is missing and a report sent
twice is stored once (JetStream dedup) and is a no-op at the controller. A failure that persists
to the last delivery reports ``folder_provision_failed`` with the reason instead of dead-lettering.

A folder moved to the trash is closed (``PosixVolume.close``: a mark under ``.work``, so it survives
a restart): every request with a token of it is refused from then on — tokens issued before the trash
included — and its unfinished uploads are dropped; a restore opens it again. A purge leaves it closed.
"""

from __future__ import annotations

import asyncio
import logging

from contracts.storage_reports import (
    FolderProvisionedReport,
    FolderProvisionFailedReport,
    FolderPurgedReport,
)
from contracts.vfolder import VFolderCreated, VFolderPurgeRequested, VFolderRestored, VFolderTrashed
from services.storage.reporting import Reporter, now_utc
from services.storage.space import ensure_room
from services.storage.uploads import UploadStore
from services.storage.usage import UsageMeter
from services.storage.volume import PosixVolume, VolumeError

__all__ = ["Provisioner"]

log = logging.getLogger(__name__)


class Provisioner:
    """Provisions, closes (in the trash), reopens and purges the folders of one volume."""

    def __init__(self, volume: PosixVolume, reporter: Reporter, meter: UsageMeter, uploads: UploadStore) -> None:
        self.volume = volume
        self._reporter = reporter
        self._meter = meter
        self._uploads = uploads

    def _id(self, folder_id: str, step: str) -> str:
        return f"{self.volume.name}:{folder_id}:{step}"

    async def created(self, event: VFolderCreated, *, last_attempt: bool = False) -> None:
        if event.volume != self.volume.name:
            return
        folder = event.originator_id
        try:
            await asyncio.to_thread(self._provision, folder, event.clone_of)
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

    def _provision(self, folder: str, clone_of: str | None) -> None:
        self.volume.claim(folder)
        if clone_of:
            if not self.volume.exists(clone_of):
                raise VolumeError(f"the source folder {clone_of} is not on volume {self.volume.name}")
            size, _ = self.volume.usage(clone_of)
            ensure_room(self.volume.root, size, f"a clone of {clone_of}")
            self.volume.clone(clone_of, folder)
        else:
            self.volume.create(folder)

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

    async def purge_requested(self, event: VFolderPurgeRequested, *, last_attempt: bool = False) -> None:
        folder = event.originator_id
        if not self.volume.owns(folder):
            return  # another volume's folder
        await asyncio.to_thread(self.volume.delete, folder)
        await self._reporter.send(FolderPurgedReport(
            report_id=self._id(folder, "purged"), volume=self.volume.name, folder_id=folder, observed_at=now_utc()))
        self._meter.forget(folder)
        log.info("folder %s purged from %s", folder, self.volume.name)
