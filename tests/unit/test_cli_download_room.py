"""``berth vfolder download`` keeps ``disk_room.KEEP_FREE`` free on the disk it writes to
(``services.cli.disk_room``): a file whose announced length does not fit is refused before a byte is written (a kernel's
sparse ``truncate -s 1T`` file is 1 TiB on the wire), and an archive, whose length is unknown, is stopped once the free
space falls under it, its useless part removed. Before, such a download wrote until the disk was full."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from services.cli import disk_room, vfolder_transfer_cmd
from services.cli.main import _register, cli

GIB = 1 << 30


class Tickets:
    """A gateway that hands out a download or archive ticket for any path."""

    async def execute(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        ticket = {"url": "http://storage.test", "token": "t", "path": variables["p"]}
        return {"requestDownload": ticket, "requestArchive": ticket}

    async def __aenter__(self) -> "Tickets":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


def streamed(*chunks: bytes, each: Any = None) -> Any:
    """An async body of ``chunks`` (``each()`` called before each one is sent)."""
    async def body() -> Any:
        for chunk in chunks:
            if each is not None:
                each()
            yield chunk
    return body()


def _serving(monkeypatch: pytest.MonkeyPatch, respond: Any) -> None:
    real = httpx.AsyncClient
    monkeypatch.setattr(vfolder_transfer_cmd, "connect_client", Tickets)
    monkeypatch.setattr(vfolder_transfer_cmd.httpx, "AsyncClient",
                        lambda **kwargs: real(transport=httpx.MockTransport(respond), **kwargs))
    _register()


def test_a_file_longer_than_the_free_space_is_refused_before_a_byte_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(disk_room, "_free", lambda directory: 3 * GIB)
    _serving(monkeypatch, lambda request: httpx.Response(200, headers={"content-length": str(1 << 40)},
                                                        content=streamed(b"\0" * 1024)))
    result = CliRunner().invoke(cli, ["vfolder", "download", "data", "sparse", "--to", str(tmp_path / "sparse")])
    assert result.exit_code == 1, result.output
    assert "the download is 1024.0 GiB, and the disk of" in result.output and "3.0 GiB free" in result.output
    assert list(tmp_path.iterdir()) == []


def test_an_archive_is_stopped_once_the_disk_would_fill_and_its_part_removed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    free = [2 * GIB]

    def written(directory: Path) -> int:
        return free[0]
    def taken() -> None:
        free[0] -= 512 << 20  # each chunk takes half a GiB of the (pretended) disk

    def endless(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=streamed(*[b"\0" * (1 << 20)] * 64, each=taken))

    monkeypatch.setattr(disk_room, "_free", written)
    monkeypatch.setattr(disk_room, "LOOK_EVERY", 1 << 20)
    _serving(monkeypatch, endless)
    result = CliRunner().invoke(cli, ["vfolder", "download", "data", "", "--tar", "--to", str(tmp_path / "all.tar")])
    assert result.exit_code == 1, result.output
    assert "stopped: the disk of" in result.output
    assert "512.0 MiB free, under the 1.0 GiB a download keeps" in result.output
    assert free[0] > 0 and list(tmp_path.iterdir()) == []


def test_a_download_that_fits_is_written_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(disk_room, "_free", lambda directory: 3 * GIB)
    _serving(monkeypatch, lambda request: httpx.Response(200, content=streamed(b"x" * 2000, b"x" * 3000)))
    result = CliRunner().invoke(cli, ["vfolder", "download", "data", "f", "--to", str(tmp_path / "f")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "f").read_bytes() == b"x" * 5000
