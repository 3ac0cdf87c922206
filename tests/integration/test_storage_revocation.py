"""Access taken back from a user of a folder reaches the storage service: the tokens issued to that user before
(they live 15 min) are refused from then on, not only those the gateway would mint after.

Found by attack: ``vfolder share adata mallory --permission wd``, mallory asks for upload and download tokens and
starts a tus upload, alice runs ``vfolder unshare adata mallory``; mallory's download token still read the file
(200) and its PATCH finished the upload into alice's folder (204), for the token's whole lifetime."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import httpx
import pytest

from contracts.envelope import Metadata
from contracts.storage_token import mint_token
from contracts.vfolder import (
    VFolderLeft,
    VFolderPermission,
    VFolderPermissionChanged,
    VFolderUnshared,
    new_folder_id,
)
from services.common.settings import Settings
from services.storage.main import run_storage
from tests.integration.test_storage_service import created
from tests.support.publish import publish_events, service_tasks
from tests.support.waiting import async_wait_for

pytestmark = pytest.mark.asyncio

TUS = {"Tus-Resumable": "1.0.0"}


def _envelope(folder: str, version: int) -> dict:
    return {"event_id": uuid.uuid4(), "originator_id": folder, "originator_version": version,
            "timestamp": dt.datetime.now(dt.UTC), "metadata": Metadata(actor="test", correlation_id="c")}


async def test_tokens_issued_before_access_is_taken_back_are_refused(tmp_path, js, nats_server):
    """Lowered to ro: writes refused, reads go on; unshared or left: everything refused and the user's unfinished
    uploads dropped; a token issued after the change works; other users' tokens are untouched."""
    settings = Settings(nats_url=nats_server.url, nats_creds=str(nats_server.credentials("storage")), data_dir=tmp_path,
                        storage_volumes=f"local={tmp_path}/vol", storage_usage_interval=3600)
    folder = new_folder_id()
    urls: list[str] = []
    async with service_tasks() as services, httpx.AsyncClient() as http:
        services.start("storage", lambda stop: run_storage(settings, stop, urls.append))
        await async_wait_for(lambda: urls, message="the storage service did not start")
        await publish_events(js, [created(folder)], 1)
        data = tmp_path / "vol" / "folders" / folder
        await async_wait_for(data.is_dir, message="not provisioned")
        (data / "a.txt").write_text("secret")
        key = (tmp_path / "storage.key").read_bytes()
        before = time.time() - 2  # issued before the changes below (iat is in whole seconds)

        def token(user: str, path: str, op: str, now: float = before) -> str:
            return mint_token(key, folder=folder, volume="local", path=path, op=op, user=user,  # type: ignore[arg-type]
                              now=now, ttl=900, max_bytes=100, quota_scope="user:alice")[0]

        async def status(user: str, op: str, now: float = before) -> int:
            auth = {"Authorization": f"Bearer {token(user, 'a.txt' if op == 'download' else 'b.bin', op, now)}"}
            if op == "download":
                return (await http.get(f"{urls[0]}/download", headers=auth)).status_code
            return (await http.post(f"{urls[0]}/tus", headers={**TUS, **auth, "Upload-Length": "10"})).status_code

        mallorys = {"Authorization": f"Bearer {token('mallory', 'm.bin', 'upload')}"}
        begun = await http.post(f"{urls[0]}/tus", headers={**TUS, **mallorys, "Upload-Length": "4"})
        assert begun.status_code == 201
        assert await status("mallory", "download") == 200 and await status("bob", "download") == 200

        await publish_events(js, [VFolderPermissionChanged(**_envelope(folder, 2), user="mallory",
                                                           permission=VFolderPermission.RO, by="alice")], 2)

        async def refused(user: str, op: str) -> bool:
            return await status(user, op) == 403

        await async_wait_for(lambda: refused("mallory", "upload"), message="a lowered user's old upload token works")
        assert await status("mallory", "download") == 200  # ro still reads
        patch = await http.patch(f"{urls[0]}{begun.headers['location']}", content=b"pwnd", headers={
            **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
            "Authorization": f"Bearer {token('mallory', 'm.bin', 'upload')}"})
        assert patch.status_code in (403, 404) and not (data / "m.bin").exists()
        assert not list((tmp_path / "vol" / ".uploads").glob("*.json"))  # its unfinished upload dropped

        await publish_events(js, [VFolderUnshared(**_envelope(folder, 3), user="mallory", by="alice"),
                                  VFolderLeft(**_envelope(folder, 4), user="bob")], 4)
        await async_wait_for(lambda: refused("mallory", "download"), message="an unshared user's old token works")
        await async_wait_for(lambda: refused("bob", "download"), message="a user who left still reads")
        bobs = {"Authorization": f"Bearer {token('bob', 'a.txt', 'download')}"}
        refusal = await http.get(f"{urls[0]}/download", headers=bobs)
        assert "ask for a new one" in refusal.json()["error"]
        assert await status("alice", "download") == 200 and await status("alice", "upload") == 201
        after = time.time() + 1  # the gateway's word on a permission given again (a share after the unshare)
        assert await status("mallory", "download", after) == 200
