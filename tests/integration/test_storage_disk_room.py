"""Uploads and clones never fill the disk under a volume (``services.storage.space``), on a real 16 MiB tmpfs:
an upload the disk has no room for is refused at creation (507, nothing written, nothing reserved), and so is a
clone; an upload that meets a disk filled meanwhile (a kernel writing into a folder) stops before the disk is
full, keeps what it wrote and resumes once space is freed. Before, a 500 MB upload onto a disk with 365 MB free
wrote until the disk was full, answered 500, and kept its part for 24 hours: PostgreSQL on the same disk could
write nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.sdk.tus import TusError, TusUploader
from services.storage import space, uploads
from services.storage.provisioning import Provisioner
from contracts.vfolder import new_folder_id
from tests.integration.test_storage_service import created
from tests.support.storage import running_storage

pytestmark = [pytest.mark.asyncio,
              pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs as the volume's disk needs root")]
MiB = 1 << 20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs mounted for the test (its floor: 5 %, about 0.8 MiB)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_an_upload_the_disk_has_no_room_for_is_refused_and_leaves_nothing(
    small_disk: Path, tmp_path: Path,
) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(20 * MiB))
    async with running_storage(small_disk / "vol") as storage:
        folder = storage.new_folder()
        token = storage.token(folder, "big.bin", "upload", max_bytes=1 << 40)
        with httpx.Client() as http:
            with pytest.raises(TusError) as refused:
                await asyncio.to_thread(TusUploader(http, storage.url, token).upload, source)
        assert refused.value.status == 507 and "not enough space" in str(refused.value)
        store = storage.ctx.uploads["local"]
        assert store.pending() == [] and store.reservations.reserved("user:alice") == 0
        assert space.disk(small_disk).free > 15 * MiB


async def test_an_upload_stops_before_a_disk_filled_meanwhile_is_full_and_resumes_once_space_is_freed(
    small_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("services.storage.uploads.ROOM_CHECK_EVERY", MiB)
    data = os.urandom(8 * MiB)
    source = tmp_path / "data.bin"
    source.write_bytes(data)
    async with running_storage(small_disk / "vol") as storage:
        folder = storage.new_folder()
        token = storage.token(folder, "data.bin", "upload", max_bytes=len(data))
        filler = storage.volume.folder_path(folder) / "checkpoint.pt"  # what a kernel writes
        urls: list[str] = []

        def fill_the_disk(offset: int) -> None:
            if offset >= 2 * MiB and not filler.exists():
                filler.write_bytes(b"\0" * (space.disk(small_disk).free - MiB))  # leaves less than the floor

        with httpx.Client() as http:
            uploader = TusUploader(http, storage.url, token, chunk=MiB)
            with pytest.raises(TusError) as stopped:
                await asyncio.to_thread(uploader.upload, source, None, urls.append, fill_the_disk)
            assert stopped.value.status == 507
            assert space.disk(small_disk).free > 0  # the floor is left free
            written = await asyncio.to_thread(uploader.offset, urls[0])
            assert 2 * MiB <= written < len(data)
            filler.unlink()
            assert await asyncio.to_thread(uploader.upload, source, urls[0]) == urls[0]
        assert (storage.volume.folder_path(folder) / "data.bin").read_bytes() == data
        assert storage.ctx.uploads["local"].pending() == []


async def test_a_clone_the_disk_has_no_room_for_is_refused_before_it_copies_anything(small_disk: Path) -> None:
    """(It copied until the disk was full, and each retry of its event did again.)"""
    async with running_storage(small_disk / "vol") as storage:
        source = storage.new_folder()
        (storage.volume.folder_path(source) / "weights.bin").write_bytes(os.urandom(9 * MiB))
        provisioner = Provisioner(storage.volume, storage.ctx.reporter, storage.ctx.meter, storage.ctx.uploads["local"])
        clone = new_folder_id()
        with pytest.raises(space.NoSpaceError, match="a clone of"):  # an OSError: retried, then reported failed
            await provisioner.created(created(clone, clone_of=source))
        assert not storage.volume.exists(clone)
        assert list((storage.volume.root / ".work").glob("clone-*")) == []
        assert space.disk(small_disk).free > 5 * MiB


async def test_an_upload_left_unwritten_holds_no_room_for_the_others(small_disk: Path) -> None:
    """An upload holds room for its rest while it is written only (``WRITING_HOLDS``): one created with a large
    length and left unwritten refused every other upload of the volume for its whole lifetime (24 h)."""
    async with running_storage(small_disk / "vol") as storage:
        store, folder = storage.ctx.uploads["local"], storage.new_folder()
        found = space.disk(small_disk)

        def create(user: str, path: str, length: int) -> uploads.PendingUpload:
            return store.create(folder=folder, path=path, length=length, user=user, scope=f"user:{user}",
                                room=1 << 40, now=time.time())

        held = create("mallory", "huge.bin", found.free - space.floor(found.size) - MiB)
        with pytest.raises(space.NoSpaceError, match="with the unfinished ones"):  # held while being written
            create("alice", "data.bin", 2 * MiB)
        idle = time.time() - uploads.WRITING_HOLDS - 1
        os.utime(store.volume.uploads / f"{held.id}.part", (idle, idle))  # unwritten for longer than that
        created_then = create("alice", "data.bin", 2 * MiB)
        assert {upload.id for upload in store.pending()} == {held.id, created_then.id}
