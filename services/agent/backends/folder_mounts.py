"""Where a kernel's storage folders are on this node: each mount's volume mapped to the agent's
own root for it (``BERTH_STORAGE_VOLUMES``), never a host path taken from an event.

A folder is ``<root>/folders/<folder_id>``: the id must be ``vfolder_<32 hex>`` (no ``/``, no ``..``), the
directory must exist and neither it nor ``folders/`` may be a symbolic link (a bind mount follows
links; one planted there would mount another place of the host). The target is checked again
(``contracts.mounts``). A mount that fails any check fails the kernel's start, naming the folder.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from contracts.mounts import MountError, MountSpec, check_mount_target, check_mount_targets
from contracts.vfolder import is_folder_id
from services.agent.backends.base import KernelStartError

__all__ = ["FOLDERS_DIR", "FolderBind", "folder_binds"]

FOLDERS_DIR = "folders"
"""The directory of folder data under a volume's root (the storage service's layout)."""


@dataclass(frozen=True)
class FolderBind:
    """One folder as the backend mounts it: host directory, container path, read-only or not."""

    source: Path
    target: str
    read_only: bool


def folder_binds(mounts: list[MountSpec], volumes: Mapping[str, Path]) -> list[FolderBind]:
    """Returns the binds of a kernel's mounts; ``KernelStartError`` saying which mount and why when
    one names a volume this node does not have, a bad folder id or target, or a missing folder."""
    try:
        check_mount_targets(check_mount_target(m.target) for m in mounts)
    except MountError as exc:
        raise KernelStartError(f"the session's mounts are invalid: {exc}") from exc
    return [_bind(mount, volumes) for mount in mounts]


def _bind(mount: MountSpec, volumes: Mapping[str, Path]) -> FolderBind:
    root = volumes.get(mount.volume)
    if root is None:
        known = ", ".join(sorted(volumes)) or "none"
        raise KernelStartError(f"folder {mount.name}: volume {mount.volume!r} is not on this node "
                               f"(BERTH_STORAGE_VOLUMES has: {known})")
    folder_id = mount.folder_id
    if not is_folder_id(folder_id):
        raise KernelStartError(f"folder {mount.name}: invalid folder id {folder_id[:80]!r} (expected vfolder_<32 hex>)")
    folders = Path(root).absolute() / FOLDERS_DIR
    source = folders / folder_id
    for path in (folders, source):
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            raise KernelStartError(f"folder {mount.name} ({folder_id}) is missing on volume {mount.volume}: "
                                   f"{path} does not exist") from None
        if not stat.S_ISDIR(mode):
            raise KernelStartError(f"folder {mount.name} ({folder_id}): {path} is not a directory (a link?)")
    return FolderBind(source=source, target=check_mount_target(mount.target), read_only=mount.permission != "rw")
