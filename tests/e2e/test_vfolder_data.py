"""Folders through a whole `berth up`: the storage service provisions a folder (its report
turned into `ready` by the controller), the CLI uploads into it over tus and downloads back, the
usage is measured, and a purge removes the directory; every service under its own bus identity."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.conftest import RunningBerth
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def _folder(berth: RunningBerth, name: str) -> dict:
    return berth.berth_json("vfolder", "info", name)  # type: ignore[return-value]


def test_a_folder_is_provisioned_filled_read_and_purged(berth_up: RunningBerth, tmp_path: Path) -> None:
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

    berth_up.berth("vfolder", "rm", "data")
    berth_up.berth("vfolder", "purge", folder)
    wait_for(lambda: not root.exists(), timeout=30, message="the folder's directory was not removed")
