"""Every string and list of a storage report is bounded when it is decoded (``contracts.storage_reports``), as the
agents' reports are: a report with a path no folder can hold, or naming a million deleted paths, is refused (the
controller dead-letters it alone) instead of being carried into folder events and read models; the largest reports
the storage service sends still pass."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from contracts.storage_reports import (
    MAX_DELETED_PATHS, FilesDeletedReport, FileUploadedReport, FolderProvisionFailedReport, decode_storage_report,
    encode_storage_report,
)
from contracts.vfolder import MAX_PATH_BYTES

FIELDS = {"report_id": "v1:" + "f" * 36 + ":provision_failed", "volume": "v" * 128, "folder_id": "f" * 36,
          "observed_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)}
LONGEST_PATH = "/".join(["d" * 255] * 16)[:MAX_PATH_BYTES]


def test_the_largest_legitimate_reports_pass() -> None:
    reports = [
        FilesDeletedReport(**FIELDS, paths=[LONGEST_PATH], by="u" * 64),
        FileUploadedReport(**FIELDS, path=LONGEST_PATH, size=2**40, sha256="a" * 64, by="u" * 64),
        FolderProvisionFailedReport(**FIELDS, reason="r" * 2000),
    ]
    for report in reports:
        assert decode_storage_report(encode_storage_report(report)) == report


@pytest.mark.parametrize("oversized", [
    FilesDeletedReport(**FIELDS, paths=["p"] * (MAX_DELETED_PATHS + 1), by="u"),
    FilesDeletedReport(**FIELDS, paths=["p" * (MAX_PATH_BYTES + 1)], by="u"),
    FileUploadedReport(**FIELDS, path="p", size=-1, sha256="a" * 64, by="u"),
    FileUploadedReport(**FIELDS, path="p", size=1, sha256="a" * 65, by="u"),
    FileUploadedReport(**FIELDS, path="p", size=1, sha256="a" * 64, by="u" * 129),
    FolderProvisionFailedReport(**{**FIELDS, "folder_id": "f" * 129}, reason="r"),
    FolderProvisionFailedReport(**{**FIELDS, "report_id": "i" * 385}, reason="r"),
    FolderProvisionFailedReport(**FIELDS, reason="r" * 8001),
], ids=["paths", "path", "size", "sha256", "by", "folder", "report-id", "reason"])
def test_an_oversized_report_is_refused_when_decoded(oversized: object) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_storage_report(msgspec.json.encode(oversized))
