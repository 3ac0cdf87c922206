"""A storage folder mounted into a session's kernels, as resolved at enqueue and recorded on the session.

``MountSpec`` is carried by ``SessionSpec.mounts`` (history from before mounts decodes with none)
and by each kernel's ``KernelAssigned.mounts``: it names the folder by id and volume, never by a
host path; the agent maps the volume to a root of its own (``BERTH_STORAGE_VOLUMES``).

A target is a path inside the container under ``/home/work`` (a relative one is taken from there):
normalised, without ``.``/``..`` or empty components, NUL, control characters or ``:``, each component
at most 255 bytes, the whole at most 512; two mounts of a session never share a target nor nest.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Literal

import msgspec

__all__ = [
    "MAX_MOUNTS",
    "MOUNT_ROOT",
    "MountError",
    "MountPermission",
    "MountSpec",
    "check_mount_target",
    "check_mount_targets",
    "default_target",
]

MOUNT_ROOT = PurePosixPath("/home/work")
"""Every mount lies under the kernel's home (Backend.AI's ``/home/work``)."""
MAX_MOUNTS = 16
"""Mounts of one session (explicit and automatic together)."""
MAX_COMPONENT_BYTES = 255
MAX_TARGET_BYTES = 512
"""The longest target: each kernel's assignment carries every mount, and events stay small."""

MountPermission = Literal["ro", "rw"]
"""What a kernel may do in a mounted folder; a ``wd`` permission on the folder mounts ``rw``."""


class MountError(ValueError):
    """Raised when a mount target is not a safe path under ``/home/work`` or clashes with another."""


class MountSpec(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One folder mounted into every kernel of a session."""

    folder_id: str
    """``vfolder_<32 hex>``: the folder's aggregate id and its directory name on the volume."""
    name: str
    """The folder's name when the session was requested (for people)."""
    volume: str
    """The storage volume holding the folder; each agent maps it to a root of its own."""
    target: str
    """Absolute path inside the container, under ``/home/work``."""
    permission: MountPermission = "ro"


def default_target(name: str) -> str:
    """Returns where a folder mounts when no path is given: ``/home/work/<name>``."""
    return check_mount_target(name)


def check_mount_target(target: str) -> str:
    """Returns ``target`` as an absolute normalised path under ``/home/work`` (a relative one is
    taken from there); ``MountError`` saying why when it is not a safe place for a mount."""
    if not target or "\x00" in target:
        raise MountError("a mount target must be a non-empty path without NUL")
    if any(ord(ch) < 0x20 or ch in ":\x7f" for ch in target):
        raise MountError(f"mount target {target!r}: no control characters or ':' allowed")
    if len(target.encode()) > MAX_TARGET_BYTES:
        raise MountError(f"mount target: at most {MAX_TARGET_BYTES} bytes")
    raw = target.split("/")
    absolute = target.startswith("/")
    parts = raw[1:] if absolute else raw
    if parts and parts[-1] == "":
        parts = parts[:-1]  # one trailing slash
    if any(part in ("", ".", "..") for part in parts):
        raise MountError(f"mount target {target!r}: no empty, '.' or '..' components")
    if any(len(part.encode()) > MAX_COMPONENT_BYTES for part in parts):
        raise MountError(f"mount target: each component at most {MAX_COMPONENT_BYTES} bytes")
    path = PurePosixPath("/", *parts) if absolute else MOUNT_ROOT.joinpath(*parts)
    if path == MOUNT_ROOT or MOUNT_ROOT not in path.parents:
        raise MountError(f"mount target {target!r} must be a path under {MOUNT_ROOT}")
    return str(path)


def check_mount_targets(targets: Iterable[str]) -> None:
    """Raises ``MountError`` when two targets are the same or one lies inside another (each already
    checked by ``check_mount_target``)."""
    paths = [PurePosixPath(t) for t in targets]
    if len(paths) > MAX_MOUNTS:
        raise MountError(f"a session may have at most {MAX_MOUNTS} mounts, got {len(paths)}")
    for i, one in enumerate(paths):
        for other in paths[i + 1:]:
            if one == other:
                raise MountError(f"two mounts at {one}")
            if one in other.parents or other in one.parents:
                inner, outer = (other, one) if one in other.parents else (one, other)
                raise MountError(f"mount targets clash: {inner} is inside {outer}")
