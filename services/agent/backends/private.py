"""Kernel directories on the agent's host are private to the agent's user.

A kernel's directory holds its runner socket (anyone who can connect runs code in that kernel), its
work files and its log. With the default umask they were readable by every local user and the socket
was world-writable: any local account could run code in any tenant's kernel. Every directory on the
way (``kernels/``, the kernel's own, ``io/``, ``work/``) is created or tightened to 0700; the container
and the runner run as the agent's user, which keeps full access.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PRIVATE_DIR", "private_dirs"]

PRIVATE_DIR = 0o700


def private_dirs(*paths: Path) -> None:
    """Creates each of ``paths`` (and its parent) if missing and makes both mode 0700."""
    for path in paths:
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        for directory in (path.parent, path):
            if directory.stat().st_mode & 0o777 != PRIVATE_DIR:
                os.chmod(directory, PRIVATE_DIR)
