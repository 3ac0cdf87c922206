"""A listing never fails because of a name a kernel gave a file: a name that is not UTF-8, has a control
character or is not in NFC (no path of the API can name it) is listed escaped as bash's ``$'...'`` (each
byte outside printable ASCII as ``\\xHH``: what a terminal in a session takes to rename it) and marked
``escaped``; every other name is listed as it is."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from tests.support.storage import running_storage

pytestmark = pytest.mark.asyncio

ODD = [b"\xff", b"caf\xc3\xa9\xfe.txt", b"a\nb", b"e\xcc\x81.txt", b"it's \\ \x7f"]
"""Not UTF-8, a control character (C0 or DEL), NFD (e + a combining acute)."""
PLAIN = ["ok.txt", "café.txt", "$'\\xff'", "space name", "\x85"]
"""Names the API addresses, listed as they are (the third is a real name that looks escaped; the last a C1
control character, which paths may have)."""


def _bytes_of(shown: str) -> bytes:
    """Returns the name an escaped entry stands for (what bash makes of ``$'...'``)."""
    assert shown.startswith("$'") and shown.endswith("'"), shown
    escapes = {"\\\\": b"\\", "\\'": b"'"}
    return b"".join(escapes.get(m[0]) or (bytes([int(m[0][2:], 16)]) if m[0].startswith("\\x") else m[0].encode())
                    for m in re.finditer(r"\\x[0-9a-f]{2}|\\\\|\\'|[ -~]", shown[2:-1]))


async def test_a_directory_with_names_no_path_can_name_is_listed_whole(tmp_path: Path) -> None:
    async with running_storage(tmp_path / "vol") as storage, httpx.AsyncClient(timeout=30) as http:
        folder = storage.new_folder()
        root = os.fsencode(storage.volume.folder_path(folder))
        os.mkdir(root + b"/d")
        for name in ODD:
            with open(root + b"/d/" + name, "wb") as f:
                f.write(b"12345")
        os.mkdir(root + b"/d/\xfe dir")
        for name in PLAIN:
            (storage.volume.folder_path(folder) / "d" / name).write_bytes(b"")

        answer = await http.get(storage.url + "/files", params={"token": storage.token(folder, "d", "list")})
        assert answer.status_code == 200, answer.text
        entries = answer.json()["entries"]
        plain = {e["name"]: e["type"] for e in entries if not e["escaped"]}
        assert plain == {name: "file" for name in PLAIN}
        escaped = {_bytes_of(e["name"]): (e["type"], e["size"]) for e in entries if e["escaped"]}
        assert escaped == {**{name: ("file", 5) for name in ODD}, b"\xfe dir": ("dir", escaped[b"\xfe dir"][1])}
        assert all(re.fullmatch(r"\$'[ -~]*'", e["name"]) for e in entries if e["escaped"])

        whole = await http.get(storage.url + "/files", params={"token": storage.token(folder, "", "list")})
        assert whole.status_code == 200 and [e["name"] for e in whole.json()["entries"]] == ["d"]
