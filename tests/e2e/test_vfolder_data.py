"""Folders through a whole `berth up`: the storage service provisions a folder (its report
turned into `ready` by the controller), the CLI uploads into it over tus and downloads back, the
usage is measured; a folder a live session mounts is not trashed (the refusal names the session),
once the session ended it goes to the trash, comes back, goes again and is purged: its directory
is gone from the volume, its history stays (`berth events`). A project's storage limit refuses an
upload over it at token issue and a second concurrent upload that would exceed it at creation, and
leaves nothing behind; every service under its own bus identity."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest

from services.cli.vfolder_transfer_cmd import REQUEST_UPLOAD
from services.sdk.client import BerthClient
from tests.e2e.conftest import RunningBerth
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def _folder(berth: RunningBerth, name: str) -> dict:
    return berth.berth_json("vfolder", "info", name)  # type: ignore[return-value]


def test_a_folder_is_provisioned_filled_read_trashed_restored_and_purged(berth_up: RunningBerth,
                                                                         tmp_path: Path) -> None:
    assert berth_up.instance()["storage_url"]
    folder = berth_up.berth_json("vfolder", "create", "data")["id"]  # type: ignore[index]
    wait_for(lambda: _folder(berth_up, "data")["status"] == "ready", timeout=30,
             message="the storage service did not provision the folder")
    root = berth_up.data_dir / "storage" / "local" / "folders" / folder
    assert root.is_dir()

    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "a.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 1))
    (source / "b.txt").write_text("hello")
    berth_up.berth("vfolder", "upload", "data", str(source), "--dest", "in")
    assert (root / "in" / "src" / "sub" / "a.bin").read_bytes() == (source / "sub" / "a.bin").read_bytes()
    listed = berth_up.berth_json("vfolder", "ls-files", "data", "in/src")
    assert sorted((e["name"], e["type"]) for e in listed) == [("b.txt", "file"), ("sub", "dir")]  # type: ignore[union-attr]
    target = tmp_path / "back.txt"
    berth_up.berth("vfolder", "download", "data", "in/src/b.txt", "--to", str(target))
    assert target.read_text() == "hello"
    wait_for(lambda: _folder(berth_up, "data")["usageBytes"] == 3 * 1024 * 1024 + 1 + 5, timeout=30,
             message="the usage was not measured")

    session = berth_up.berth_json("session", "create", "-n", "user", "--mount", "data")["id"]  # type: ignore[index]
    refused = berth_up.berth("vfolder", "rm", "data", check=False)
    assert refused.returncode != 0
    assert f"CONFLICT: folder 'data' is mounted by live session(s) user ({session})" in refused.stderr, refused.stderr
    assert _folder(berth_up, "data")["status"] == "ready"
    berth_up.berth("session", "rm", session)
    wait_for(lambda: berth_up.berth_json("session", "info", session)["status"] == "TERMINATED", timeout=30,
             message="the session did not end")

    assert berth_up.berth_json("vfolder", "rm", "data")["status"] == "trashed"  # type: ignore[index]
    assert berth_up.berth_json("vfolder", "restore", "data")["status"] == "ready"  # type: ignore[index]
    assert (root / "in" / "src" / "b.txt").read_text() == "hello"
    berth_up.berth("vfolder", "rm", "data")
    berth_up.berth("vfolder", "purge", folder)
    wait_for(lambda: not root.exists(), timeout=30, message="the folder's directory was not removed")
    wait_for(lambda: _folder(berth_up, folder)["status"] == "purged", timeout=30, message="never purged")
    history = [e["type"] for e in berth_up.berth_json("events", folder)]  # type: ignore[union-attr]
    assert [t for t in history if t in LIFE] == LIFE, history
    assert history.count("vfolder.file_uploaded") == 2, history


LIFE = ["vfolder.created", "vfolder.provisioned", "vfolder.trashed", "vfolder.restored", "vfolder.trashed",
        "vfolder.purge_requested", "vfolder.purged"]


def test_uploads_over_the_scope_limit_are_refused_and_leave_nothing(berth_up: RunningBerth, tmp_path: Path) -> None:
    berth_up.berth("vfolder", "create", "team", "--project", "default")
    wait_for(lambda: _folder(berth_up, "team")["status"] == "ready", timeout=30, message="never provisioned")
    folder_id = _folder(berth_up, "team")["id"]
    volume = berth_up.data_dir / "storage" / "local"
    berth_up.berth("admin", "project", "set-storage-limit", "default", "4k")
    (tmp_path / "a.bin").write_bytes(os.urandom(3072))
    berth_up.berth("vfolder", "upload", "team", str(tmp_path / "a.bin"))
    wait_for(lambda: _folder(berth_up, "team")["usageBytes"] == 3072, timeout=30, message="usage not measured")

    (tmp_path / "b.bin").write_bytes(os.urandom(2048))
    over = berth_up.berth("vfolder", "upload", "team", str(tmp_path / "b.bin"), check=False)
    assert over.returncode != 0
    assert "QUOTA: an upload of 2048 bytes is over the quota: 1024 bytes left in project:default" in over.stderr, \
        over.stderr
    assert [e["name"] for e in berth_up.berth_json("vfolder", "ls-files", "team")] == ["a.bin"]  # type: ignore[union-attr]
    assert not any((volume / ".uploads").iterdir()) and _folder(berth_up, "team")["usageBytes"] == 3072

    # two uploads that each fit what is left, but not together: the second is refused at creation
    first, second = asyncio.run(_tickets(berth_up, folder_id, [("c.bin", 600), ("d.bin", 600)]))
    with httpx.Client(timeout=30) as http:
        created = http.post(f"{first['url']}/tus", headers=_tus(first, **{"Upload-Length": "600"}))
        assert created.status_code == 201, created.text
        refused = http.post(f"{second['url']}/tus", headers=_tus(second, **{"Upload-Length": "600"}))
        assert refused.status_code == 413, refused.text
        done = http.patch(f"{first['url']}{created.headers['Location']}", content=os.urandom(600),
                          headers=_tus(first, **{"Upload-Offset": "0",
                                                 "Content-Type": "application/offset+octet-stream"}))
        assert done.status_code == 204, done.text

    wait_for(lambda: _folder(berth_up, "team")["usageBytes"] == 3072 + 600, timeout=30, message="usage not measured")
    assert sorted(e["name"] for e in berth_up.berth_json("vfolder", "ls-files", "team")) == ["a.bin", "c.bin"]  # type: ignore[union-attr]
    assert sorted(p.name for p in (volume / "folders" / folder_id).iterdir()) == ["a.bin", "c.bin"]
    wait_for(lambda: not any((volume / ".uploads").iterdir()), timeout=30, message="an upload was left behind")


async def _tickets(berth: RunningBerth, folder: str, files: list[tuple[str, int]]) -> list[dict]:
    instance = berth.instance()
    async with BerthClient(str(instance["gateway_url"]), str(instance["access_key"]),
                           str(instance["secret_key"])) as client:
        return [(await client.execute(REQUEST_UPLOAD, {"f": folder, "p": path, "s": size}))["requestUpload"]
                for path, size in files]


def _tus(ticket: dict, **headers: str) -> dict[str, str]:
    return {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {ticket['token']}", **headers}
