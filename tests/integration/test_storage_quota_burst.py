"""Upload tokens asked for in a burst do not store the quota once per token.

Found by attack: with a folder quota of 1000 bytes, ``requestUpload`` five times before uploading anything gave
five tokens with ``maxBytes`` 1000 each; the five uploads of 1000 bytes, one after the other, were all accepted
(usage 5000). The bytes of the uploads of a scope finished after a token's issue now count against its room."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from contracts.storage_token import mint_token
from tests.support.storage import running_storage

pytestmark = pytest.mark.asyncio

TUS = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}


async def test_tokens_minted_before_an_upload_finished_count_its_bytes(tmp_path: Path) -> None:
    async with running_storage(tmp_path / "vol") as storage, httpx.AsyncClient(timeout=60) as http:
        folder = storage.new_folder()

        def token(path: str, issued: float, scope: str = "user:mallory") -> str:
            return mint_token(storage.ctx.key, folder=folder, volume="local", path=path, op="upload", user="mallory",
                              now=issued, ttl=900, max_bytes=1000, quota_scope=scope)[0]

        async def upload(tok: str) -> httpx.Response:
            return await http.post(storage.url + "/tus", content=b"x" * 1000,
                                   headers={**TUS, "Upload-Length": "1000", "Authorization": f"Bearer {tok}"})

        burst = time.time() - 10  # all asked for before any upload, each with the whole room
        tokens = [token(f"f{i}.bin", burst) for i in range(3)]
        assert (await upload(tokens[0])).status_code == 201
        refused = await upload(tokens[1])
        assert refused.status_code == 413, refused.text
        assert "since this token was issued" in refused.json()["error"]
        assert (await upload(tokens[2])).status_code == 413
        assert sorted(p.name for p in storage.volume.folder_path(folder).iterdir()) == ["f0.bin"]
        assert not list((tmp_path / "vol" / ".uploads").iterdir())  # nothing reserved or left behind

        other_scope = await upload(token("g.bin", burst, scope="user:alice"))
        assert other_scope.status_code == 201  # another scope's room is its own
        fresh = await upload(token("h.bin", time.time()))  # issued after: the gateway's room counts what was stored
        assert fresh.status_code == 201
