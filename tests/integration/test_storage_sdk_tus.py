"""The SDK's tus client (``services.sdk.tus``, what ``berth vfolder upload`` uses) against a real
storage data plane: a small file goes in its creation request (``creation-with-upload``), a large
one in streamed PATCHes; an interrupted upload resumes the same upload; a refused token is renewed
once; a creation whose body is refused leaves no upload and no reservation behind."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os

import httpx
import pytest

from contracts.subjects import REPORTS_STREAM
from services.sdk.tus import TusError, TusUploader
from tests.support.storage import running_storage

pytestmark = pytest.mark.asyncio
MiB = 1 << 20
TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"


class Stop(Exception):
    pass


async def test_a_small_file_is_one_request_and_is_reported(tmp_path, js):
    source = tmp_path / "small.txt"
    source.write_bytes(b"a small file")
    async with running_storage(tmp_path / "vol", js) as storage:
        folder = storage.new_folder()
        token = storage.token(folder, "d/small.txt", "upload", max_bytes=100)
        created = []
        store = storage.ctx.uploads["local"]
        create = store.create
        store.create = lambda **kw: created.append(kw) or create(**kw)  # type: ignore[method-assign]
        with httpx.Client() as http:
            requests = []
            http.event_hooks["request"] = [requests.append]
            await asyncio.to_thread(TusUploader(http, storage.url, token).upload, source)
        assert [r.method for r in requests] == ["POST"] and len(created) == 1
        assert (storage.volume.folder_path(folder) / "d" / "small.txt").read_bytes() == b"a small file"
        await storage.ctx.reporter.flush()
    sub = await js.pull_subscribe("rp.storage.*.file_uploaded", stream=REPORTS_STREAM)
    [msg] = await sub.fetch(1, timeout=5)
    report = json.loads(msg.data)
    assert (report["path"], report["size"], report["sha256"], report["by"]) == (
        "d/small.txt", 12, hashlib.sha256(b"a small file").hexdigest(), "alice")


async def test_a_large_file_goes_in_patches_and_an_interrupted_one_resumes(tmp_path):
    data = os.urandom(5 * MiB + 123)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    async with running_storage(tmp_path / "vol") as storage:
        folder = storage.new_folder()
        token = storage.token(folder, "big.bin", "upload", max_bytes=len(data))
        urls: list[str] = []

        def stop_after_two(offset: int) -> None:
            if offset >= 2 * MiB:
                raise Stop

        with httpx.Client() as http:
            uploader = TusUploader(http, storage.url, token, chunk=MiB)
            with pytest.raises(Stop):
                await asyncio.to_thread(uploader.upload, source, None, urls.append, stop_after_two)
            assert not (storage.volume.folder_path(folder) / "big.bin").exists()
            assert await asyncio.to_thread(uploader.offset, urls[0]) == 2 * MiB
            # a refused token (here: a download token) is renewed once
            renewed = TusUploader(http, storage.url, storage.token(folder, "big.bin", "download"),
                                  renew=lambda: token, chunk=2 * MiB)
            assert await asyncio.to_thread(renewed.upload, source, urls[0]) == urls[0]
        assert (storage.volume.folder_path(folder) / "big.bin").read_bytes() == data
        assert storage.ctx.uploads["local"].pending() == []


async def test_a_creation_whose_body_is_refused_leaves_nothing(tmp_path):
    async with running_storage(tmp_path / "vol") as storage, httpx.AsyncClient() as http:
        folder = storage.new_folder()
        token = storage.token(folder, "t.txt", "upload", max_bytes=100)
        r = await http.post(storage.url + "/tus", content=b"x" * 11,
                            headers={**TUS, "Upload-Length": "10", "Content-Type": OCTETS,
                                     "Authorization": f"Bearer {token}"})
        assert r.status_code == 413
        store = storage.ctx.uploads["local"]
        assert store.pending() == [] and store.reservations.reserved("user:alice") == 0
        assert list(storage.volume.folder_path(folder).iterdir()) == []
        with httpx.Client() as sync_http:
            uploader = TusUploader(sync_http, storage.url, storage.token(folder, "t.txt", "download"))
            source = tmp_path / "t.txt"
            source.write_bytes(b"y")
            with pytest.raises(TusError) as refused:
                await asyncio.to_thread(uploader.upload, source)
        assert refused.value.status == 403


async def test_a_resume_waits_while_the_interrupted_request_still_writes(tmp_path):
    """A client killed mid-PATCH and run again at once: the server is still writing the first request's
    bytes (423 for the second writer); the resumed upload asks again and finishes from the new offset."""
    data = os.urandom(3 * MiB)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    async with running_storage(tmp_path / "vol") as storage, httpx.AsyncClient(timeout=30) as slow:
        folder = storage.new_folder()
        token = storage.token(folder, "big.bin", "upload", max_bytes=len(data))
        urls: list[str] = []

        def stop_at_once(offset: int) -> None:
            raise Stop

        with httpx.Client() as http:
            uploader = TusUploader(http, storage.url, token, chunk=MiB)
            with pytest.raises(Stop):
                await asyncio.to_thread(uploader.upload, source, None, urls.append, stop_at_once)
            release, sent = asyncio.Event(), asyncio.Event()

            async def held_body():  # the interrupted client's request, still arriving
                yield data[:MiB // 2]
                sent.set()
                await release.wait()
                yield data[MiB // 2:MiB]

            draining = asyncio.create_task(slow.patch(
                urls[0], content=held_body(),
                headers={**TUS, "Upload-Offset": "0", "Content-Type": OCTETS, "Content-Length": str(MiB),
                         "Authorization": f"Bearer {token}"}))
            await sent.wait()
            statuses: list[int] = []
            http.event_hooks["response"] = [lambda r: statuses.append(r.status_code)]
            resumed = asyncio.create_task(asyncio.to_thread(uploader.upload, source, urls[0]))
            deadline = asyncio.get_running_loop().time() + 30
            while 423 not in statuses:  # the resumed upload met the writer still at work
                assert asyncio.get_running_loop().time() < deadline and not resumed.done(), statuses
                await asyncio.sleep(0.02)
            release.set()
            assert (await draining).status_code == 204
            assert await resumed == urls[0]
        assert (storage.volume.folder_path(folder) / "big.bin").read_bytes() == data
