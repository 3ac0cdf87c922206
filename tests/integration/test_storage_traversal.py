"""Traversal refused by the storage data plane itself, in every operation (upload, download, archive,
list, mkdir, move source and destination, delete): a token naming ``..``, an absolute path or NUL, and
a path through links planted in the folder (as a kernel can through a rw mount: to a host directory,
to a host file, to ``/``, to ``..``). Nothing outside the folder is read, listed, created, moved or
deleted (a deletion through a link finds nothing there to delete, as one under a file or a missing
directory), and a refused upload leaves nothing behind: no file, no part in ``.uploads``, no reservation."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import httpx
import pytest

from services.storage.volume import PosixVolume
from tests.support.storage import RunningStorage, running_storage

pytestmark = pytest.mark.asyncio

TUS = {"Tus-Resumable": "1.0.0"}
BAD_TEXT = ["../x", "/etc/passwd", "a\x00b", "a/../../x", ".."]
THROUGH_LINKS = ["escape/secret.txt", "escape/new", "pw", "root/etc/passwd", "up/outside/secret.txt"]


def _plant(storage: RunningStorage, folder: str, outside: Path) -> None:
    root = storage.volume.folder_path(folder)
    os.symlink(outside, root / "escape")
    os.symlink(outside / "secret.txt", root / "pw")
    os.symlink("/", root / "root")
    os.symlink("..", root / "up")
    (root / "ok.txt").write_text("inside")


async def _upload(http: httpx.AsyncClient, storage: RunningStorage, folder: str, path: str, data: bytes) -> int:
    """Returns the status of the first refusal of an upload of ``data`` to ``path`` (201/204 when none)."""
    token = storage.token(folder, path, "upload", max_bytes=len(data))
    auth = {**TUS, "Authorization": f"Bearer {token}"}
    created = await http.post(storage.url + "/tus", headers={**auth, "Upload-Length": str(len(data))})
    if created.status_code != 201:
        return created.status_code
    done = await http.patch(storage.url + created.headers["location"], content=data,
                            headers={**auth, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    return done.status_code


async def test_every_operation_refuses_what_leaves_the_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s3cret")
    async with running_storage(tmp_path / "vol") as storage, httpx.AsyncClient() as http:
        folder = storage.new_folder()
        _plant(storage, folder, outside)

        async def status(method: str, route: str, tokened: str, op: str, **extra: str) -> int:
            token = storage.token(folder, tokened, op, dst=extra.pop("dst", ""))  # type: ignore[arg-type]
            return (await http.request(method, storage.url + route, params={"token": token, **extra})).status_code

        async def deleted(path: str) -> list[str]:
            answer = await http.post(storage.url + "/delete", params={"token": storage.token(folder, path, "delete")})
            assert answer.status_code == 200, (path, answer.text)
            return answer.json()["deleted"]

        for bad in BAD_TEXT + THROUGH_LINKS:
            assert await status("GET", "/download", bad, "download") in (400, 403), bad
            assert await status("GET", "/archive", bad, "archive") in (400, 403), bad
            assert await status("GET", "/files", bad, "list") in (400, 403), bad
            assert await status("GET", "/files", "", "list", path=bad) in (400, 403), bad
            assert await status("POST", "/mkdir", f"{bad}/new", "mkdir") in (400, 403), bad
            assert await status("POST", "/move", "ok.txt", "move", dst=f"{bad}/moved") in (400, 403, 409), bad
            assert await _upload(http, storage, folder, f"{bad}/up.txt", b"abc") in (400, 403, 409), bad
            if bad not in ("pw",):  # the link itself may be moved or deleted: it is the folder's entry
                assert await status("POST", "/move", bad, "move", dst="taken") in (400, 403, 404), bad
                if bad in THROUGH_LINKS:  # a link is no directory to a walk that follows none: nothing there
                    assert await deleted(bad) == [], bad
                else:
                    assert await status("POST", "/delete", bad, "delete") in (400, 403), bad
        assert await _upload(http, storage, folder, "pw", b"abc") in (201, 204)  # replaces the link, not its target

        archive = await http.get(storage.url + "/archive", params={"token": storage.token(folder, "", "archive")})
        with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
            assert sorted(tar.getnames()) == ["ok.txt", "pw"]  # links left out; pw is now the uploaded file
        listed = await http.get(storage.url + "/files", params={"token": storage.token(folder, "", "list")})
        assert {e["name"]: e["type"] for e in listed.json()["entries"]} == {
            "escape": "link", "ok.txt": "file", "pw": "file", "root": "link", "up": "link"}

    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "s3cret"
    assert sorted(p.name for p in (tmp_path / "vol" / ".uploads").iterdir()) == []
    assert not (tmp_path / "taken").exists() and not (tmp_path / "vol" / "folders" / "taken").exists()


async def test_a_refused_upload_releases_its_reservation(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    async with running_storage(tmp_path / "vol") as storage, httpx.AsyncClient() as http:
        folder = storage.new_folder()
        _plant(storage, folder, outside)
        assert await _upload(http, storage, folder, "escape/new.bin", b"x" * 100) in (400, 409)
        assert await _upload(http, storage, folder, "fits.bin", b"x" * 100) == 204  # the whole room again
        assert (storage.volume.folder_path(folder) / "fits.bin").read_bytes() == b"x" * 100
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "vol" / ".uploads").iterdir()) == []


async def test_the_volume_s_directories_are_the_service_s_alone(tmp_path: Path) -> None:
    """Folders reach kernels by bind mounts, which the directories above them do not gate: ``folders/`` was
    0755, and every local user of the host could list every tenant's files (and read what kernels wrote,
    0644 by their umask). A volume made before is closed at the service's next start."""
    root = tmp_path / "vol"
    (root / "folders").mkdir(parents=True, mode=0o755)
    (root / "folders").chmod(0o755)
    volume = PosixVolume("local", root)
    for sub in ("folders", ".uploads", ".work"):
        assert (root / sub).stat().st_mode & 0o777 == 0o700, sub
    assert volume.folder_path("vfolder_" + "0" * 32).parent == root / "folders"
