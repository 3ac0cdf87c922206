"""The storage service's reports: facts it observed on one of its volumes.

Reports are not events: the storage service publishes them on ``REPORTS``
(``rp.storage.<volume>.<type>``, with ``Nats-Msg-Id`` = ``report_id``); the controller turns them
into vfolder events (``contracts.vfolder``), idempotently.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec

from contracts.reports import MAX_ID_CHARS, MAX_REPORTED_DETAIL_CHARS
from contracts.vfolder import MAX_PATH_BYTES

__all__ = [
    "ALL_STORAGE_REPORTS",
    "AnyStorageReport",
    "MAX_DELETED_PATHS",
    "MAX_REPORT_ID_CHARS",
    "DirectoryCreatedReport",
    "FileMovedReport",
    "FileUploadedReport",
    "FilesDeletedReport",
    "FolderProvisionFailedReport",
    "FolderProvisionedReport",
    "FolderPurgedReport",
    "StorageReport",
    "UsageMeasuredReport",
    "decode_storage_report",
    "encode_storage_report",
]


# Every string and list of a report is bounded, generously for what the storage service sends (as
# ``contracts.reports`` bounds the agents'), so that an oversized one is refused when it is decoded (dead-lettered
# alone) instead of being carried into folder events and read models: a path over ``MAX_PATH_BYTES``, which no
# folder can hold, or a list of a million deleted paths.
MAX_REPORT_ID_CHARS = 3 * MAX_ID_CHARS
"""The longest report id: a UUID, or ``<volume>:<folder id>:<step>``."""
MAX_DELETED_PATHS = 1024
"""The most paths one ``FilesDeletedReport`` names (the storage service names the one path it removed)."""
MAX_SHA256_CHARS = 64
"""A SHA-256 in hex."""

Id = Annotated[str, msgspec.Meta(max_length=MAX_ID_CHARS)]
Path = Annotated[str, msgspec.Meta(max_length=MAX_PATH_BYTES)]  # characters: never more than its UTF-8 bytes
Count = Annotated[int, msgspec.Meta(ge=0)]


class StorageReport(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    """A fact the storage service observed on one of its volumes. ``report_id`` is unique per
    fact (sent as ``Nats-Msg-Id``; the same fact sent again carries the same id)."""

    report_id: Annotated[str, msgspec.Meta(max_length=MAX_REPORT_ID_CHARS)]
    volume: Id
    folder_id: Id
    observed_at: dt.datetime

    @classmethod
    def type_name(cls) -> str:
        return str(cls.__struct_config__.tag)


class FolderProvisionedReport(StorageReport, frozen=True, kw_only=True, tag="folder_provisioned"):
    """The folder's directory exists (a clone: with the source's content)."""


class FolderProvisionFailedReport(StorageReport, frozen=True, kw_only=True, tag="folder_provision_failed"):
    reason: Annotated[str, msgspec.Meta(max_length=MAX_REPORTED_DETAIL_CHARS)]


class FolderPurgedReport(StorageReport, frozen=True, kw_only=True, tag="folder_purged"):
    """The folder's directory is gone."""


class FileUploadedReport(StorageReport, frozen=True, kw_only=True, tag="file_uploaded"):
    path: Path
    size: Count
    sha256: Annotated[str, msgspec.Meta(max_length=MAX_SHA256_CHARS)]
    by: Id


class FilesDeletedReport(StorageReport, frozen=True, kw_only=True, tag="files_deleted"):
    paths: Annotated[list[Path], msgspec.Meta(max_length=MAX_DELETED_PATHS)]
    by: Id


class FileMovedReport(StorageReport, frozen=True, kw_only=True, tag="file_moved"):
    src: Path
    dst: Path
    by: Id


class DirectoryCreatedReport(StorageReport, frozen=True, kw_only=True, tag="directory_created"):
    path: Path
    by: Id


class UsageMeasuredReport(StorageReport, frozen=True, kw_only=True, tag="usage_measured"):
    bytes: Count
    files: Count


ALL_STORAGE_REPORTS: tuple[type[StorageReport], ...] = (
    FolderProvisionedReport, FolderProvisionFailedReport, FolderPurgedReport, FileUploadedReport,
    FilesDeletedReport, FileMovedReport, DirectoryCreatedReport, UsageMeasuredReport,
)
"""Every storage report type (the decoder's union, the controller's table)."""

AnyStorageReport = (
    FolderProvisionedReport | FolderProvisionFailedReport | FolderPurgedReport | FileUploadedReport
    | FilesDeletedReport | FileMovedReport | DirectoryCreatedReport | UsageMeasuredReport
)

_storage_report_decoder = msgspec.json.Decoder(AnyStorageReport)


def encode_storage_report(report: StorageReport) -> bytes:
    """Returns the JSON bytes of a storage report."""
    return msgspec.json.encode(report)


def decode_storage_report(data: bytes) -> AnyStorageReport:
    """Returns the storage report in ``data``; raises ``msgspec.ValidationError``/``DecodeError``."""
    return _storage_report_decoder.decode(data)
