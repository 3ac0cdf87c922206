"""Uploads survive a crash at any step: an upload sealed but not yet moved into its folder is moved
at the next start and reported again; a sealed and moved one is reported again only."""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from contracts.vfolder import new_folder_id
from services.storage.paths import PathError
from services.storage.quota import Reservations
from services.storage.uploads import Sealed, UploadStore
from services.storage.volume import PosixVolume

pytestmark = pytest.mark.asyncio


async def _chunks(*parts: bytes):
    for part in parts:
        yield part


@pytest.mark.parametrize("moved", [False, True])
async def test_a_sealed_upload_is_finished_and_reported_after_a_restart(tmp_path, moved):
    volume = PosixVolume("local", tmp_path / "vol")
    folder = new_folder_id()
    volume.create(folder)
    store = UploadStore(volume, Reservations())
    upload = store.create(folder=folder, path="a/b.bin", length=6, user="alice", scope="user:alice", room=10, now=0)
    assert await store.append(upload, 0, _chunks(b"abc", b"def")) == 6
    sealed = Sealed(upload=upload, sha256=hashlib.sha256(b"abcdef").hexdigest(), report_id=f"upload:{upload.id}")
    (volume.uploads / f"{upload.id}.done").write_bytes(msgspec.json.encode(sealed))  # the crash: sealed, not moved
    if moved:
        store._place(sealed)
    restarted = Reservations()
    again = UploadStore(volume, restarted)
    assert again.recovered == [sealed]
    assert (volume.folder_path(folder) / "a" / "b.bin").read_bytes() == b"abcdef"
    assert again.pending() == [] and restarted.reserved("user:alice") == 0
    again.acknowledge(sealed)
    assert sorted(p.name for p in volume.uploads.iterdir()) == []


async def test_an_unfinished_upload_keeps_its_reservation_across_a_restart_until_it_expires(tmp_path):
    volume = PosixVolume("local", tmp_path / "vol")
    folder = new_folder_id()
    volume.create(folder)
    store = UploadStore(volume, Reservations(), ttl=100)
    upload = store.create(folder=folder, path="x", length=8, user="a", scope="s", room=10, now=0)
    await store.append(upload, 0, _chunks(b"1234"))
    restarted = Reservations()
    again = UploadStore(volume, restarted, ttl=100)
    assert again.offset(again.get(upload.id)) == 4 and restarted.reserved("s") == 8
    assert again.expire(now=99) == 0
    assert again.expire(now=100) == 1
    assert restarted.reserved("s") == 0 and list(volume.uploads.iterdir()) == []


async def test_an_upload_whose_destination_is_refused_leaves_nothing(tmp_path):
    volume = PosixVolume("local", tmp_path / "vol")
    folder = new_folder_id()
    volume.create(folder)
    (tmp_path / "outside").mkdir()
    reservations = Reservations()
    store = UploadStore(volume, reservations)
    with pytest.raises(PathError):
        store.create(folder=folder, path="../x", length=3, user="a", scope="s", room=10, now=0)
    upload = store.create(folder=folder, path="d/x.bin", length=3, user="a", scope="s", room=10, now=0)
    crashed = store.create(folder=folder, path="d/y.bin", length=3, user="a", scope="s", room=10, now=0)
    await store.append(upload, 0, _chunks(b"abc"))
    await store.append(crashed, 0, _chunks(b"abc"))
    sealed = Sealed(upload=crashed, sha256=hashlib.sha256(b"abc").hexdigest(), report_id=f"upload:{crashed.id}")
    (volume.uploads / f"{crashed.id}.done").write_bytes(msgspec.json.encode(sealed))  # sealed, then a crash
    (volume.folder_path(folder) / "d").symlink_to(tmp_path / "outside")  # planted by a kernel meanwhile

    with pytest.raises(PathError):
        await store.finish(upload)
    restarted = Reservations()
    again = UploadStore(volume, restarted)

    assert again.recovered == [] and again.pending() == []
    assert reservations.reserved("s") == 3  # the crashed one, until the restart dropped it
    assert restarted.reserved("s") == 0
    assert list(volume.uploads.iterdir()) == [] and list((tmp_path / "outside").iterdir()) == []
