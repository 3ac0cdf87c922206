"""The storage service's reports: facts it observed on one of its volumes.

Reports are not events: the storage service publishes them on ``REPORTS``
(``rp.storage.<volume>.<type>``, with ``Nats-Msg-Id`` = ``report_id``); the controller turns them
into vfolder events (``contracts.vfolder``), idempotently.
"""

from __future__ import annotations

import datetime as dt

import msgspec

__all__ = [
    "ALL_STORAGE_REPORTS",
    "AnyStorageReport",
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


class StorageReport(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    """A fact the storage service observed on one of its volumes. ``report_id`` is unique per
    fact (sent as ``Nats-Msg-Id``; the same fact sent again carries the same id)."""

    report_id: str
    volume: str
    folder_id: str
    observed_at: dt.datetime

    @classmethod
    def type_name(cls) -> str:
        return str(cls.__struct_config__.tag)


class FolderProvisionedReport(StorageReport, frozen=True, kw_only=True, tag="folder_provisioned"):
    """The folder's directory exists (a clone: with the source's content)."""


class FolderProvisionFailedReport(StorageReport, frozen=True, kw_only=True, tag="folder_provision_failed"):
    reason: str


class FolderPurgedReport(StorageReport, frozen=True, kw_only=True, tag="folder_purged"):
    """The folder's directory is gone."""


class FileUploadedReport(StorageReport, frozen=True, kw_only=True, tag="file_uploaded"):
    path: str
    size: int
    sha256: str
    by: str


class FilesDeletedReport(StorageReport, frozen=True, kw_only=True, tag="files_deleted"):
    paths: list[str]
    by: str


class FileMovedReport(StorageReport, frozen=True, kw_only=True, tag="file_moved"):
    src: str
    dst: str
    by: str


class DirectoryCreatedReport(StorageReport, frozen=True, kw_only=True, tag="directory_created"):
    path: str
    by: str


class UsageMeasuredReport(StorageReport, frozen=True, kw_only=True, tag="usage_measured"):
    bytes: int
    files: int


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
