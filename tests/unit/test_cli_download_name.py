"""``berth vfolder download``'s local name: the path's last part, the folder's name for its root."""

from __future__ import annotations

import pytest

from services.cli.vfolder_transfer_cmd import download_name


@pytest.mark.parametrize(("folder", "path", "as_tar", "name"), [
    ("data", "models/w.bin", False, "w.bin"),
    ("data", "models/", True, "models.tar"),
    ("data", "/", True, "data.tar"),
    ("data", "", True, "data.tar"),
    ("../../etc", "/", True, "etc.tar"),
    ("..", "..", True, "folder.tar"),
])
def test_a_download_is_named_after_its_path_or_its_folder(folder: str, path: str, as_tar: bool, name: str) -> None:
    assert download_name(folder, path, as_tar) == name
