"""The storage volumes of this machine (``BERTH_STORAGE_VOLUMES``): volume name → root directory.

``name=/path[,other=/path]``; empty: the one volume ``local`` at ``<data dir>/storage/local``. The
storage service keeps each volume's folders under ``<root>/folders/``; an agent maps a mount's volume
to its root here (never to a path carried by an event). Names are plain tokens; paths absolute.
"""

from __future__ import annotations

from pathlib import Path

from contracts.subjects import SubjectError, check_token
from contracts.vfolder import DEFAULT_VOLUME

__all__ = ["parse_volumes"]


def parse_volumes(setting: str, data_dir: Path) -> dict[str, Path]:
    """Returns the volumes of ``setting``; ValueError naming ``BERTH_STORAGE_VOLUMES`` when an entry is
    not ``name=/absolute/path`` or a name is given twice."""
    if not setting.strip():
        return {DEFAULT_VOLUME: Path(data_dir).absolute() / "storage" / DEFAULT_VOLUME}
    volumes: dict[str, Path] = {}
    for entry in setting.split(","):
        name, sep, path = (part.strip() for part in entry.partition("="))
        try:
            check_token(name, "volume name")
        except SubjectError as exc:
            raise ValueError(f"BERTH_STORAGE_VOLUMES: {exc}") from exc
        if not sep or not path.startswith("/"):
            raise ValueError(f"BERTH_STORAGE_VOLUMES: {entry.strip()!r} is not name=/absolute/path")
        if name in volumes:
            raise ValueError(f"BERTH_STORAGE_VOLUMES: volume {name} given twice")
        volumes[name] = Path(path)
    return volumes
