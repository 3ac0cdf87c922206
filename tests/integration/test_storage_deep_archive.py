"""An archive of a folder holding a directory chain thousands of levels deep: 2,000 levels are archived to the
file at the bottom; past ``MAX_DEPTH`` the stream is cut (its client sees an incomplete body, never a tar that
looks whole) and the service goes on, no fd left open. Before, ``os.fwalk`` raised RecursionError about 1,000
levels down: the archive was cut there, silently, a traceback in the log."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import httpx
import pytest

from services.common.tree_walk import MAX_DEPTH
from tests.support.deep_trees import BOTTOM, deep_tmp, make_chain, open_fds
from tests.support.storage import fds_naming, running_storage
from tests.support.waiting import async_wait_for

__all__ = ["deep_tmp"]  # a fixture of the tests

pytestmark = pytest.mark.asyncio


async def test_a_chain_2000_deep_is_archived_one_past_the_bound_cuts_the_stream_and_the_service_goes_on(
    deep_tmp: Path,
) -> None:
    root = deep_tmp / "vol"
    async with running_storage(root) as storage, httpx.AsyncClient(timeout=60) as http:
        deep, deeper = storage.new_folder(), storage.new_folder()
        make_chain(storage.volume.folder_path(deep), 2_000)
        make_chain(storage.volume.folder_path(deeper), MAX_DEPTH + 10)
        (storage.volume.folder_path(deeper) / "top.txt").write_text("top")
        assert (await http.get(storage.url + "/health")).status_code == 200  # the client's connection is open
        before = open_fds()

        r = await http.get(storage.url + "/archive", params={"token": storage.token(deep, "", "archive")})
        assert r.status_code == 200
        with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
            names = tar.getnames()
            bottom = "d/" * 2_000 + "bottom.txt"
            assert len(names) == 2_001 and bottom in names
            assert tar.extractfile(bottom).read() == BOTTOM  # type: ignore[union-attr]

        with pytest.raises(httpx.RemoteProtocolError):  # an incomplete chunked body: not a whole archive
            await http.get(storage.url + "/archive", params={"token": storage.token(deeper, "", "archive")})
        assert (await http.get(storage.url + "/health")).status_code == 200
        listed = await http.get(storage.url + "/files", params={"token": storage.token(deeper, "", "list")})
        assert listed.status_code == 200 and [e["name"] for e in listed.json()["entries"]] == ["d", "top.txt"]
        await async_wait_for(lambda: not fds_naming(root) and open_fds() <= before, timeout=30, message=(
            f"fds left open after the archives: {sorted(fds_naming(root))}, {open_fds()} now, {before} before"))
