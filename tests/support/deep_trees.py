"""Directory chains thousands of levels deep, as ``for i in $(seq 2000); do mkdir d; cd d; done`` in a kernel
leaves them in a rw mount: made from directory fds (their paths are far longer than ``PATH_MAX``), in a
temporary directory emptied at the end (``deep_tmp``); and a limit on the fds the block under test may open."""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["BOTTOM", "DIR_FLAGS", "bottom_of", "deep_tmp", "fd_limit", "make_chain", "open_fds"]

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
BOTTOM = b"at the bottom\n"
"""What the file ``bottom.txt`` at the end of a chain holds (14 bytes)."""


def make_chain(top: Path | int, depth: int, name: str = "d") -> None:
    """Makes ``depth`` nested directories ``name`` under ``top`` (a path or a directory fd) and the file
    ``bottom.txt`` (``BOTTOM``) in the last one."""
    fd = os.open(top, DIR_FLAGS) if isinstance(top, Path) else os.dup(top)
    try:
        for _ in range(depth):
            os.mkdir(name, 0o755, dir_fd=fd)
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        out = os.open("bottom.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644, dir_fd=fd)
        with open(out, "wb") as f:
            f.write(BOTTOM)
    finally:
        os.close(fd)


def bottom_of(top: Path, depth: int, name: str = "d") -> bytes | None:
    """Returns what ``bottom.txt`` at the end of the chain under ``top`` holds; None when the chain or the
    file is not all there."""
    fd = os.open(top, DIR_FLAGS)
    try:
        for _ in range(depth):
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        out = os.open("bottom.txt", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    except FileNotFoundError:
        return None
    finally:
        os.close(fd)
    with open(out, "rb") as f:
        return f.read()


def open_fds() -> int:
    """Returns how many fds this process has open."""
    return len(os.listdir("/proc/self/fd")) - 1  # the listing's own


@contextlib.contextmanager
def fd_limit(spare: int = 64) -> Iterator[None]:
    """Lets the block open at most about ``spare`` fds more than are open now (``RLIMIT_NOFILE``): a walk
    keeping one fd per level of a chain deeper than that fails with ``EMFILE``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(open_fds() + spare, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def deep_tmp(tmp_path: Path) -> Iterator[Path]:
    """Yields an empty directory for deep trees: on ``/dev/shm`` when it can be written (a tmpfs: 20,000 nested
    mkdirs take a tenth of a second there, seconds on a busy disk), else in ``tmp_path``; removed afterwards by
    ``rm -rf`` (GNU rm goes down any depth), as pytest's own removal of old temporary directories
    (``shutil.rmtree``) would raise RecursionError in a chain 1,000 deep and fail later test sessions."""
    shm = Path("/dev/shm")
    where = Path(tempfile.mkdtemp(prefix="berth-deep-", dir=shm if shm.is_dir() and os.access(shm, os.W_OK)
                                  else tmp_path))
    try:
        yield where
    finally:
        subprocess.run(["rm", "-rf", "--", str(where)], check=True)
