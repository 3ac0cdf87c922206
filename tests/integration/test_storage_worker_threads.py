"""Usage measures and deletions never hold the threads the data plane reads files with.

Found by review of an attack: a kernel makes trees of millions of files in a folder at no cost to its quota, and
a walk or a removal of such a tree lasts seconds to minutes; one small upload to each of a few such folders, or a
few dozen deletions of such trees at once, ran in the thread pool every download, listing and upload's last step
waits for, and every tenant's requests waited behind them. Here the walks and removals block until the test lets
them go: a download is answered meanwhile."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import pytest

from tests.support.storage import running_storage
from tests.support.waiting import async_wait_for

pytestmark = pytest.mark.asyncio

FOLDERS = 40
"""More slow walks at once than any thread pool of the data plane has threads."""


async def test_a_download_is_served_while_slow_measures_run(tmp_path: Path) -> None:
    async with running_storage(tmp_path / "vol") as storage:
        folder = storage.new_folder()
        (storage.volume.folder_path(folder) / "a.txt").write_text("hi")
        release, walking = threading.Event(), []
        real_usage = storage.volume.usage

        def slow_usage(folder_id: str) -> tuple[int, int]:
            walking.append(folder_id)
            release.wait(60)  # a walk of a huge tree
            return real_usage(folder_id)

        storage.volume.usage = slow_usage  # type: ignore[method-assign]
        try:
            for _ in range(FOLDERS):
                storage.ctx.meter.touch(storage.volume, storage.new_folder())
            await async_wait_for(lambda: walking, timeout=30, message="no measure started")
            async with httpx.AsyncClient(timeout=15) as http:
                answer = await http.get(storage.url + "/download",
                                        params={"token": storage.token(folder, "a.txt", "download")})
            assert answer.status_code == 200 and answer.text == "hi"
        finally:
            release.set()


async def test_a_download_is_served_while_slow_deletions_run(tmp_path: Path) -> None:
    async with running_storage(tmp_path / "vol") as storage, httpx.AsyncClient(timeout=60) as http:
        folder = storage.new_folder()
        (storage.volume.folder_path(folder) / "a.txt").write_text("hi")
        release, removing = threading.Event(), []
        real_remove = storage.volume.remove

        def slow_remove(folder_id: str, path: str) -> bool:
            removing.append(path)
            release.wait(60)  # a removal of a huge tree
            return real_remove(folder_id, path)

        storage.volume.remove = slow_remove  # type: ignore[method-assign]
        deletions = [asyncio.create_task(http.post(storage.url + "/delete", params={
            "token": storage.token(folder, f"tree{i}", "delete")})) for i in range(FOLDERS)]
        try:
            await async_wait_for(lambda: removing, timeout=30, message="no deletion started")
            answer = await asyncio.wait_for(http.get(storage.url + "/download", params={
                "token": storage.token(folder, "a.txt", "download")}), 15)
            assert answer.status_code == 200 and answer.text == "hi"
        finally:
            release.set()
            done = await asyncio.gather(*deletions, return_exceptions=True)
        assert all(isinstance(r, httpx.Response) and r.json() == {"deleted": []} for r in done), done
