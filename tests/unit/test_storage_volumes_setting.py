"""``BERTH_STORAGE_VOLUMES`` (``services.common.volumes.parse_volumes``): volume name → root; a bad value
is a ValueError naming the setting (the agent, or the storage service, does not start)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.volumes import parse_volumes


def test_empty_is_the_local_volume_under_the_data_dir(tmp_path: Path) -> None:
    assert parse_volumes("", tmp_path) == {"local": tmp_path.absolute() / "storage" / "local"}


def test_named_volumes_map_to_their_roots(tmp_path: Path) -> None:
    assert parse_volumes(" local=/srv/a , fast=/mnt/nvme/b", tmp_path) == {"local": Path("/srv/a"),
                                                                           "fast": Path("/mnt/nvme/b")}


@pytest.mark.parametrize("setting, fragment", [
    ("local", "not name=/absolute/path"), ("local=relative/x", "not name=/absolute/path"),
    ("../x=/srv", "invalid volume name"), ("a b=/srv", "invalid volume name"), ("=/srv", "invalid volume name"),
    ("a=/x,a=/y", "volume a given twice"),
])
def test_a_bad_setting_names_it(tmp_path: Path, setting: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="BERTH_STORAGE_VOLUMES") as refused:
        parse_volumes(setting, tmp_path)
    assert fragment in str(refused.value)
