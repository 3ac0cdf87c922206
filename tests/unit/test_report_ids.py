"""Report message ids keyed with the sender's credential (``services.common.report_ids``)."""

from __future__ import annotations

from pathlib import Path

from services.common.report_ids import ReportIds


def test_ids_are_stable_per_credential_and_differ_between_credentials(tmp_path: Path) -> None:
    mine, theirs = tmp_path / "mine.creds", tmp_path / "theirs.creds"
    mine.write_bytes(b"seed one")
    theirs.write_bytes(b"seed two")
    plain = "a1:s1-k0:kernel_running"
    assert ReportIds.of_credentials(mine)(plain) == ReportIds.of_credentials(mine)(plain)  # a restart: the same id
    assert ReportIds.of_credentials(mine)(plain) != ReportIds.of_credentials(theirs)(plain)
    assert ReportIds.of_credentials(mine)(plain).startswith(plain + "~")
    assert ReportIds.of_credentials("")(plain) == plain  # an open bus: no credential, no key
