"""``berth usage``'s table: no limit reads "none", never a bare 0 that reads as "no session allowed"."""

from __future__ import annotations

from services.cli.cells import cell
from services.cli.usage_cmd import usage_rows


def test_unlimited_reads_none_and_limits_are_kept() -> None:
    rows = [
        {"scope": "keypair", "name": "AK1", "used": {"cpu": "1"}, "limit": {}, "sessions": 1, "maxSessions": 0},
        {"scope": "keypair", "name": "AK2", "used": {}, "limit": {"cpu": "2"}, "sessions": 0, "maxSessions": 3},
        {"scope": "domain", "name": "default", "used": {}, "limit": {}, "sessions": 0, "maxSessions": None},
    ]
    shown = [[cell(key, row[key]) for key in ("limit", "maxSessions")] for row in usage_rows(rows)]
    assert shown == [["none", "none"], ["cpu=2", "3"], ["none", "-"]]
    assert rows[0]["maxSessions"] == 0  # the API's rows (-o json) are left as they are
