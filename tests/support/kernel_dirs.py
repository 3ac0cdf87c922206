"""Kernel directories made to look old, for the retention's tests (``services.agent.backends.leftovers``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["age"]

DAY = 86400.0


def age(root: Path, days: float) -> None:
    """Makes the kernel directory ``root`` and what it holds (one level down) look last changed ``days`` ago."""
    then = time.time() - days * DAY
    for path in [*root.iterdir(), root]:
        os.utime(path, (then, then), follow_symlinks=False)
