"""Byte counts in ``berth vfolder`` and ``berth usage --storage``: binary units on a terminal, where a person reads
them; exact when piped, where the README promises full values (``2.9 MiB`` is not the folder's size)."""

from __future__ import annotations

import io

from services.cli.output import Output
from services.cli.vfolder_cmd import COLUMNS, STORAGE_COLUMNS, _shown, size_shown, storage_rows

SIZE = 3_041_280  # 2.9 MiB, rounded


def printed(terminal: bool, rows: list[dict], columns: list[tuple[str, str]]) -> str:
    stdout = io.StringIO()
    out = Output(stdout=stdout, stderr=io.StringIO(), terminal=terminal, err_terminal=False, width=300)
    out.table(rows, columns)
    return stdout.getvalue()


def test_size_shown_is_exact_only_when_piped() -> None:
    piped = Output(stdout=io.StringIO(), stderr=io.StringIO(), terminal=False, err_terminal=False)
    on_terminal = Output(stdout=io.StringIO(), stderr=io.StringIO(), terminal=True, err_terminal=False)
    assert (size_shown(piped, SIZE), size_shown(piped, 0), size_shown(piped, None)) == ("3041280", "0", "0")
    assert (size_shown(on_terminal, SIZE), size_shown(on_terminal, 0)) == ("2.9 MiB", "0 B")


def test_piped_folder_and_storage_tables_print_exact_byte_counts() -> None:
    folder = {"id": "f1", "name": "data", "usageBytes": SIZE, "quotaLimit": 5 * 1024**3 + 1, "shares": []}
    scope = {"quotaScope": "user:alice", "folders": 1, "usageBytes": SIZE, "usageFiles": 2, "limitBytes": 0}
    for terminal, size, quota in ((False, "3041280", "5368709121"), (True, "2.9 MiB", "5.0 GiB")):
        out = Output(stdout=io.StringIO(), stderr=io.StringIO(), terminal=terminal, err_terminal=False)
        shown = _shown(out, folder)
        assert (shown["usage"], shown["quota"]) == (size, quota)
        assert size in printed(terminal, [shown], COLUMNS)
        (row,) = storage_rows(out, [scope])
        assert (row["used"], row["limit"]) == (size, "none")
        assert size in printed(terminal, [row], STORAGE_COLUMNS)
