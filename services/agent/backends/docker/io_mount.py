"""A small tmpfs of its own for each kernel's socket directory (``io/``), under a root agent.

``io/`` is the kernel's while its runner starts (it creates its socket there), and the kernel's
image is tenant code: in that window it could open a file in ``io/`` and, holding it open after the
agent took the directory back, fill the host's disk through it. Mounted as a tmpfs of
``IO_SIZE`` (1 MiB) inside the agent's 0700 kernel directory, ``io/`` holds the socket and nothing
big, whatever the kernel does, and no other local user can reach it. A non-root agent cannot mount:
its kernels' ``io/`` stays a plain directory (see the README).

The mount lives as long as the kernel's container: the backend unmounts it (detached, so a
container still holding it never blocks) whenever it removes the container.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

__all__ = ["IO_SIZE", "mount_io", "mounted_under", "unmount_io"]

log = logging.getLogger(__name__)

IO_SIZE = 1024 * 1024
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8
_MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str, path: Path) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what} {path}: {os.strerror(err)}")


def mount_io(path: Path, uid: int, gid: int) -> bool:
    """Mounts a tmpfs of ``IO_SIZE`` owned by ``uid:gid`` (0700) on the directory ``path``; returns
    False without mounting when the agent is not root. A mount already there is kept. OSError when
    the mount fails (root without CAP_SYS_ADMIN): the kernel does not start rather than run unbounded."""
    if os.geteuid() != 0:
        return False
    if os.path.ismount(path):
        return True
    options = f"size={IO_SIZE},mode=0700,uid={uid},gid={gid}".encode()
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    _check(_libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", flags, options), "cannot mount a tmpfs on", path)
    return True


def unmount_io(path: Path) -> None:
    """Unmounts (detached) the tmpfs on ``path``, if any; logs instead of raising."""
    if not os.path.ismount(path):
        return
    if _libc.umount2(os.fsencode(path), _MNT_DETACH) != 0:
        log.warning("cannot unmount %s: %s", path, os.strerror(ctypes.get_errno()))


def mounted_under(root: Path) -> list[Path]:
    """Returns the mount points strictly under ``root`` (from ``/proc/self/mountinfo``), deepest first."""
    prefix = str(Path(root).absolute()) + "/"
    points: list[Path] = []
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        for line in mountinfo:
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(prefix):
                points.append(Path(point))
    return sorted(points, key=lambda p: len(p.parts), reverse=True)
