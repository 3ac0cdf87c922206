"""An upload whose last byte arrived but which cannot be moved into its folder leaves nothing behind and
says why: a kernel that made a directory at its destination just before the move (409), a disk full
while its seal is written (507). Before, any ``OSError`` there answered 500 and left the upload's record,
seal and reservation, which held its quota scope's room until the upload expired a day later."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import httpx
import pytest

from tests.support.storage import RunningStorage, running_storage

pytestmark = pytest.mark.asyncio

TUS = {"Tus-Resumable": "1.0.0"}
DATA = b"x" * 1000


async def _upload(http: httpx.AsyncClient, storage: RunningStorage, folder: str, path: str) -> httpx.Response:
    """Returns the answer to the request carrying the upload's last byte (its creation, with the body)."""
    token = storage.token(folder, path, "upload", max_bytes=len(DATA))
    return await http.post(storage.url + "/tus", content=DATA, headers={
        **TUS, "Authorization": f"Bearer {token}", "Upload-Length": str(len(DATA)),
        "Content-Type": "application/offset+octet-stream"})


def _nothing_left(storage: RunningStorage) -> None:
    assert sorted(p.name for p in storage.volume.uploads.iterdir()) == []
    assert storage.ctx.uploads["local"].reservations.reserved("user:alice") == 0


async def test_a_directory_made_at_the_destination_just_before_the_move_is_a_conflict(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_replace = os.replace
    raced = []

    def kernel_first(src, dst, *, src_dir_fd=None, dst_dir_fd=None):  # noqa: ANN001, ANN202
        if str(src).endswith(".part") and dst_dir_fd is not None and not raced:
            raced.append(dst)
            os.mkdir(dst, dir_fd=dst_dir_fd)  # the kernel's mkdir, after the check that nothing is a directory there
        return real_replace(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    async with running_storage(tmp_path / "vol") as storage, httpx.AsyncClient(timeout=30) as http:
        folder = storage.new_folder()
        monkeypatch.setattr(os, "replace", kernel_first)
        refused = await _upload(http, storage, folder, "out.bin")
        monkeypatch.undo()
        assert raced == ["out.bin"] and refused.status_code == 409, refused.text
        assert "out.bin" in refused.json()["error"] and "directory" in refused.json()["error"]
        _nothing_left(storage)
        assert (await _upload(http, storage, folder, "other.bin")).status_code == 201  # the whole room again
        assert (storage.volume.folder_path(folder) / "other.bin").read_bytes() == DATA
        assert (storage.volume.folder_path(folder) / "out.bin").is_dir()


async def test_a_disk_full_while_the_seal_is_written_answers_507_and_drops_the_upload(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fsync = os.fsync

    def full_disk(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".done.tmp"):  # what a full disk answers, on a real fd
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    async with running_storage(tmp_path / "vol") as storage, httpx.AsyncClient(timeout=30) as http:
        folder = storage.new_folder()
        monkeypatch.setattr(os, "fsync", full_disk)
        refused = await _upload(http, storage, folder, "out.bin")
        monkeypatch.undo()
        assert refused.status_code == 507, refused.text
        assert "upload it again" in refused.json()["error"]
        _nothing_left(storage)
        assert list(storage.volume.folder_path(folder).iterdir()) == []
        assert (await _upload(http, storage, folder, "out.bin")).status_code == 201
        assert (storage.volume.folder_path(folder) / "out.bin").read_bytes() == DATA
