"""Kernel directories on the agent's host are private to the agent's user.

A kernel's directory holds its runner socket (anyone who can connect runs code in that kernel), its
work files and its log. With the default umask they were readable by every local user and the socket
was world-writable: any local account could run code in any tenant's kernel. Every directory on the
way (``kernels/``, the kernel's own, ``io/``) is created or tightened to 0700.

A Docker kernel runs as another user than a root agent (``BERTH_KERNEL_USER``): ``hand_over`` gives
it ``io/`` while its runner creates the socket there, and ``take_back`` returns ``io/`` to the agent
as soon as the runner listens, so the kernel can no longer add files there or replace its socket
(the agent, root, still connects; the runner keeps its listening socket).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PRIVATE_DIR", "hand_over", "private_dirs", "take_back"]

PRIVATE_DIR = 0o700


def private_dirs(*paths: Path) -> None:
    """Creates each of ``paths`` (and its parent) if missing and makes both mode 0700."""
    for path in paths:
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        for directory in (path.parent, path):
            if directory.stat().st_mode & 0o777 != PRIVATE_DIR:
                os.chmod(directory, PRIVATE_DIR)


def hand_over(path: Path, uid: int, gid: int) -> None:
    """Makes the directory ``path`` belong to ``uid:gid`` (mode 0700). ``path`` is the agent's own
    (the kernel sees only what is inside it), so it cannot be a link the kernel planted."""
    os.chown(path, uid, gid, follow_symlinks=False)
    os.chmod(path, PRIVATE_DIR)


def take_back(path: Path) -> None:
    """Returns the directory ``path`` to the agent's own user (mode 0700), without following a link."""
    hand_over(path, os.getuid(), os.getgid())
