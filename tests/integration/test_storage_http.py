"""The storage data plane over real HTTP: tus uploads with the real ``tuspy`` client (resumed
after an interruption), Range downloads, streamed archives, file operations, tokens and quota
refusals, and the reports on the real bus."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import tarfile

import httpx
import pytest
from nats.js import JetStreamContext
from tusclient import client as tus_client

from contracts.subjects import REPORTS_STREAM
from contracts.storage_reports import decode_storage_report
from tests.support.storage import RunningStorage, running_storage

pytestmark = pytest.mark.asyncio


async def _reports(js: JetStreamContext) -> list:
    sub = await js.pull_subscribe("rp.storage.>", stream=REPORTS_STREAM)
    found = []
    try:
        while True:
            msgs = await sub.fetch(50, timeout=0.5)
            found += [decode_storage_report(m.data) for m in msgs]
            for m in msgs:
                await m.ack()
    except Exception:  # noqa: BLE001 - nats TimeoutError: nothing more
        pass
    finally:
        await sub.unsubscribe()
    return found


def _tus_upload(storage: RunningStorage, token: str, data: bytes, chunk: int = 1 << 20, stop_at: int | None = None) -> str:
    client = tus_client.TusClient(storage.url + "/tus", headers={"Authorization": f"Bearer {token}"})
    uploader = client.uploader(file_stream=io.BytesIO(data), chunk_size=chunk, metadata={"filename": "x"})
    uploader.upload(stop_at=stop_at)
    return uploader.url


async def test_a_tus_upload_lands_atomically_and_is_reported(tmp_path, js):
    async with running_storage(tmp_path / "vol", js) as storage:
        folder = storage.new_folder()
        data = os.urandom(3 * (1 << 20) + 17)
        token = storage.token(folder, "dir/data.bin", "upload", max_bytes=len(data))
        await asyncio.to_thread(_tus_upload, storage, token, data)
        assert (storage.volume.folder_path(folder) / "dir" / "data.bin").read_bytes() == data
        await storage.ctx.reporter.flush()
        assert list(storage.volume.uploads.iterdir()) == []  # the seal went with the stored report
    reports = await _reports(js)
    uploaded = [r for r in reports if r.type_name() == "file_uploaded"]
    assert [(r.path, r.size, r.sha256, r.by) for r in uploaded] == [
        ("dir/data.bin", len(data), hashlib.sha256(data).hexdigest(), "alice")]
    assert any(r.type_name() == "usage_measured" and r.bytes == len(data) for r in reports)


async def test_every_upload_is_followed_by_a_measure_even_when_usage_is_unchanged(tmp_path, js):
    """The measure settles the bytes of the uploads before it, which quotas count until then."""
    async with running_storage(tmp_path / "vol", js) as storage:
        folder = storage.new_folder()
        for _ in range(2):  # the same file twice: the second leaves the usage as it was
            token = storage.token(folder, "a.bin", "upload", max_bytes=10)
            await asyncio.to_thread(_tus_upload, storage, token, b"0123456789")
            await storage.ctx.meter.settle()
        await storage.ctx.reporter.flush()
    kinds = [(r.type_name(), getattr(r, "bytes", None)) for r in await _reports(js)]
    assert kinds == [("file_uploaded", None), ("usage_measured", 10)] * 2


async def test_an_interrupted_upload_resumes_where_it_stopped(tmp_path):
    data = os.urandom(5 * (1 << 20))
    async with running_storage(tmp_path / "vol") as storage:
        folder = storage.new_folder()
        token = storage.token(folder, "big.bin", "upload", max_bytes=len(data))
        url = await asyncio.to_thread(_tus_upload, storage, token, data, 1 << 20, 2 << 20)
        async with httpx.AsyncClient() as http:
            head = await http.head(url, headers={"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}"})
        assert head.headers["upload-offset"] == str(2 << 20)
    # the service restarts (same volume, same key): a fresh token for the same file resumes
    key = storage.ctx.key
    from tests.support.storage import make_context
    ctx = make_context(tmp_path / "vol", None)
    ctx.key = key
    async with running_storage(tmp_path / "vol", ctx=ctx) as storage:
        fresh = storage.token(folder, "big.bin", "upload", max_bytes=len(data))
        client = tus_client.TusClient(storage.url + "/tus", headers={"Authorization": f"Bearer {fresh}"})
        uploader = await asyncio.to_thread(client.uploader, file_stream=io.BytesIO(data), chunk_size=1 << 20,
                                           url=storage.url + "/tus/" + url.rsplit("/", 1)[1])
        assert uploader.offset == 2 << 20
        await asyncio.to_thread(uploader.upload)
        assert (storage.volume.folder_path(folder) / "big.bin").read_bytes() == data


async def test_uploads_are_refused_over_the_room_and_with_bad_tokens(tmp_path):
    async with running_storage(tmp_path / "vol") as storage, httpx.AsyncClient() as http:
        folder = storage.new_folder()
        tus = {"Tus-Resumable": "1.0.0"}
        over = storage.token(folder, "a.bin", "upload", max_bytes=100)
        r = await http.post(storage.url + "/tus", headers={**tus, "Upload-Length": "101", "Authorization": f"Bearer {over}"})
        assert r.status_code == 413
        # two concurrent uploads of one scope cannot together exceed the room
        first = await http.post(storage.url + "/tus", headers={**tus, "Upload-Length": "60", "Authorization": f"Bearer {over}"})
        assert first.status_code == 201
        second = storage.token(folder, "b.bin", "upload", max_bytes=100)
        r = await http.post(storage.url + "/tus", headers={**tus, "Upload-Length": "60", "Authorization": f"Bearer {second}"})
        assert r.status_code == 413 and "reserved" in r.json()["error"]
        # terminating the first frees its reservation
        loc = first.headers["location"]
        assert (await http.delete(storage.url + loc, headers={**tus, "Authorization": f"Bearer {over}"})).status_code == 204
        r = await http.post(storage.url + "/tus", headers={**tus, "Upload-Length": "60", "Authorization": f"Bearer {second}"})
        assert r.status_code == 201
        for bad in (storage.token(folder, "a.bin", "download"), storage.token(folder, "a.bin", "upload", ttl=1)[:-2] + "xx", "nope"):
            r = await http.post(storage.url + "/tus", headers={**tus, "Upload-Length": "1", "Authorization": f"Bearer {bad}"})
            assert r.status_code == 403
        # another file's token cannot write into an upload
        other = storage.token(folder, "c.bin", "upload", max_bytes=100)
        r = await http.patch(storage.url + r.headers.get("location", loc), content=b"x",
                             headers={**tus, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
                                      "Authorization": f"Bearer {other}"})
        assert r.status_code == 404
        assert [p.name for p in storage.volume.folder_path(folder).iterdir()] == []


async def test_downloads_honour_single_ranges_and_etags(tmp_path):
    async with running_storage(tmp_path / "vol") as storage, httpx.AsyncClient() as http:
        folder = storage.new_folder()
        data = bytes(range(256)) * 100
        (storage.volume.folder_path(folder) / "f.bin").write_bytes(data)
        url = storage.url + "/download?token=" + storage.token(folder, "f.bin", "download")
        whole = await http.get(url)
        assert whole.status_code == 200 and whole.content == data
        part = await http.get(url, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == data[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
        tail = await http.get(url, headers={"Range": "bytes=-10"})
        assert tail.content == data[-10:]
        assert (await http.get(url, headers={"Range": f"bytes={len(data)}-"})).status_code == 416
        stale = await http.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
        assert stale.status_code == 200 and stale.content == data
        os.symlink("/etc/passwd", storage.volume.folder_path(folder) / "link")
        r = await http.get(storage.url + "/download?token=" + storage.token(folder, "link", "download"))
        assert r.status_code == 400
        r = await http.get(storage.url + "/download?token=" + storage.token(folder, "missing", "download"))
        assert r.status_code == 404


async def test_an_archive_streams_the_tree_without_links(tmp_path):
    async with running_storage(tmp_path / "vol") as storage, httpx.AsyncClient() as http:
        folder = storage.new_folder()
        root = storage.volume.folder_path(folder)
        (root / "d" / "e").mkdir(parents=True)
        (root / "d" / "a.txt").write_text("A" * 1000)
        (root / "d" / "e" / "b.txt").write_text("B")
        os.symlink("/etc", root / "d" / "etc")
        r = await http.get(storage.url + "/archive", params={"token": storage.token(folder, "d", "archive")})
        assert r.status_code == 200
        with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
            assert sorted(tar.getnames()) == ["a.txt", "e", "e/b.txt"]
            assert tar.extractfile("a.txt").read() == b"A" * 1000
        r = await http.get(storage.url + "/archive", params={"token": storage.token(folder, "d", "archive"), "path": "x"})
        assert r.status_code == 403


async def test_file_operations_change_the_folder_and_are_reported(tmp_path, js):
    async with running_storage(tmp_path / "vol", js) as storage, httpx.AsyncClient() as http:
        folder = storage.new_folder()
        assert (await http.post(storage.url + "/mkdir", params={"token": storage.token(folder, "a/b", "mkdir")})).status_code == 200
        (storage.volume.folder_path(folder) / "a" / "b" / "f").write_text("x")
        r = await http.post(storage.url + "/move", params={"token": storage.token(folder, "a/b", "move", dst="c")})
        assert r.status_code == 200
        r = await http.get(storage.url + "/files", params={"token": storage.token(folder, "", "list")})
        assert [(e["name"], e["type"]) for e in r.json()["entries"]] == [("a", "dir"), ("c", "dir")]
        r = await http.get(storage.url + "/files", params={"token": storage.token(folder, "", "list"), "path": "c"})
        assert [(e["name"], e["size"]) for e in r.json()["entries"]] == [("f", 1)]
        r = await http.post(storage.url + "/move", params={"token": storage.token(folder, "c", "move", dst="a")})
        assert r.status_code == 409
        r = await http.post(storage.url + "/delete", params={"token": storage.token(folder, "c", "delete")})
        assert r.json() == {"deleted": ["c"]}
        r = await http.get(storage.url + "/files", params={"token": storage.token(folder, "", "list"), "path": "../x"})
        assert r.status_code == 400
    kinds = [(r.type_name(), getattr(r, "by", "")) for r in await _reports(js)]
    assert [k for k in kinds if k[0] != "usage_measured"] == [
        ("directory_created", "alice"), ("file_moved", "alice"), ("files_deleted", "alice")]


async def test_a_user_has_a_bounded_number_of_unfinished_uploads(tmp_path, monkeypatch):
    """Each unfinished upload is two files kept for a day: one token created them in a loop, unbounded."""
    monkeypatch.setattr("services.storage.uploads.MAX_UNFINISHED", 3)
    async with running_storage(tmp_path / "vol") as storage:
        folder = storage.new_folder()
        token = storage.token(folder, "x.bin", "upload", max_bytes=1 << 20)
        headers = {"Tus-Resumable": "1.0.0", "Upload-Length": "10", "Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=storage.url) as http:
            created = [await http.post("/tus", headers=headers) for _ in range(3)]
            assert [r.status_code for r in created] == [201, 201, 201]
            refused = await http.post("/tus", headers=headers)
            assert refused.status_code == 429 and "alice has 3 unfinished uploads" in refused.json()["error"]
            other = storage.token(folder, "y.bin", "upload", user="bob", max_bytes=1 << 20)
            assert (await http.post("/tus", headers={**headers, "Authorization": f"Bearer {other}"})).status_code == 201
            cancelled = await http.delete(created[0].headers["Location"], headers=headers)
            assert cancelled.status_code == 204
            assert (await http.post("/tus", headers=headers)).status_code == 201
        assert len(storage.ctx.uploads["local"].pending()) == 4
