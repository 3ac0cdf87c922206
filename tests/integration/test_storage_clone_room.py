"""Clones copied at the same time never take more room than the disk has (``Provisioner._admit``), on a
real 16 MiB tmpfs: a clone that fits alone but not beside the one being copied waits for it, then is refused
(``NoSpaceError``, retried, then reported failed) before it copies anything. Without the count, both passed
their look at the disk at once, and the first ran the disk out of space (ENOSPC) halfway through its copy."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from contracts.vfolder import new_folder_id
from services.storage import provisioning, space
from services.storage.provisioning import Provisioner
from tests.integration import test_storage_disk_room
from tests.integration.test_storage_folder_lanes import HeldClones
from tests.integration.test_storage_service import created
from tests.support.storage import running_storage
from tests.support.waiting import async_wait_for

pytestmark = [pytest.mark.asyncio,
              pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs as the volume's disk needs root")]
small_disk = test_storage_disk_room.small_disk
"""A 16 MiB tmpfs mounted for the test (the fixture of ``test_storage_disk_room``)."""
SOURCE_BYTES = 9 << 19
"""4.5 MiB: two sources fill 9 of the disk's 16 MiB; one clone fits above the floor (0.8 MiB), not two."""


async def test_a_clone_waits_for_the_room_the_clone_being_copied_takes(
    small_disk: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running_storage(small_disk / "vol") as storage:
        sources = storage.new_folder(), storage.new_folder()
        for source in sources:
            (storage.volume.folder_path(source) / "weights.bin").write_bytes(os.urandom(SOURCE_BYTES))
        first, second = new_folder_id(), new_folder_id()
        provisioner = Provisioner(storage.volume, storage.ctx.reporter, storage.ctx.meter, storage.ctx.uploads["local"])
        clones = HeldClones(monkeypatch, first)
        looks: list[int] = []

        def look(path: Path, needed: int, what: str) -> None:
            looks.append(needed)
            space.ensure_room(path, needed, what)

        monkeypatch.setattr(provisioning, "ensure_room", look)
        copying_first = asyncio.create_task(provisioner.created(created(first, clone_of=sources[0])))
        try:
            await async_wait_for(lambda: first in clones.started, message="the first clone never began")
            copying_second = asyncio.create_task(provisioner.created(created(second, clone_of=sources[1])))
            await async_wait_for(lambda: len(looks) == 2, message="the second clone never looked at the disk")
        finally:
            clones.release.set()
        await copying_first
        with pytest.raises(space.NoSpaceError, match="a clone of"):
            await copying_second
        assert looks[:2] == [SOURCE_BYTES, 2 * SOURCE_BYTES]  # the second counted the first's copy
        assert (storage.volume.folder_path(first) / "weights.bin").stat().st_size == SOURCE_BYTES
        assert not storage.volume.exists(second)
        assert list((storage.volume.root / ".work").glob("clone-*")) == []
        found = space.disk(small_disk)
        assert found.free >= space.floor(found.size)
