"""A kernel's directory holding a tree thousands of levels deep (``for i in $(seq 3000); do mkdir d; cd d; done``
in its working directory) goes with the others once kept long enough (``leftovers.py``), links in it removed,
never followed. Before, ``shutil.rmtree`` raised RecursionError about 1,000 levels down, out of the sweep: that
directory, and every other one due in the same look, was never looked at again until the agent restarted."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from services.agent.backends.leftovers import Leftovers
from tests.support.deep_trees import DIR_FLAGS, deep_tmp, fd_limit, make_chain, open_fds
from tests.support.kernel_dirs import age

__all__ = ["deep_tmp"]  # a fixture of the tests

DEEP = 3_000
DAY = 86400.0


async def _not_in_use(kernel_id: str) -> bool:
    return False


def _ended_kernel(kernels: Path, kernel_id: str) -> Path:
    """The directory of a kernel ended eight days ago: its log and its working directory."""
    root = kernels / kernel_id
    (root / "work").mkdir(parents=True)
    (root / "runner.log").write_text("log")
    return root


def _link_at_bottom(top: Path, depth: int, target: Path) -> None:
    """Puts a link ``out`` to ``target`` at the bottom of the chain of ``depth`` directories ``d`` under ``top``."""
    fd = os.open(top, DIR_FLAGS)
    try:
        for _ in range(depth):
            child = os.open("d", DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        os.symlink(target, "out", dir_fd=fd)
    finally:
        os.close(fd)


def test_a_kernel_directory_holding_a_chain_3000_deep_goes_with_the_others_due(deep_tmp: Path) -> None:
    kernels = deep_tmp / "kernels"
    deep = _ended_kernel(kernels, "k-deep")
    make_chain(deep / "work", DEEP)
    age(deep, 8)
    later = _ended_kernel(kernels, "k-later")  # due in the same look, after it
    age(later, 8)
    leftovers = Leftovers(kernels, 7 * DAY)
    before = open_fds()
    with fd_limit():  # a removal keeping an fd per level: EMFILE
        gone = asyncio.run(leftovers.sweep(_not_in_use))
    assert sorted(gone) == ["k-deep", "k-later"]
    assert list(kernels.iterdir()) == []
    assert open_fds() == before


def test_links_in_a_deep_kernel_directory_are_removed_never_followed(deep_tmp: Path) -> None:
    outside = deep_tmp / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "precious").write_text("keep me")
    kernels = deep_tmp / "kernels"
    root = _ended_kernel(kernels, "k1")
    make_chain(root / "work", DEEP)
    _link_at_bottom(root / "work", DEEP, outside)
    (root / "work" / "top-link").symlink_to(outside / "sub")
    age(root, 8)
    leftovers = Leftovers(kernels, 7 * DAY)
    assert asyncio.run(leftovers.sweep(_not_in_use)) == ["k1"]
    assert not os.path.lexists(root)
    assert (outside / "sub" / "precious").read_text() == "keep me"
