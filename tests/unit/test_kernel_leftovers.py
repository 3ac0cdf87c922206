"""What ended kernels leave on a node goes once kept long enough (``leftovers.py``), on a real
directory tree with a clock of the test's own."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from services.agent.backends.leftovers import Leftovers

DAY = 86400.0
NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def kernel_dir(kernels: Path, kernel_id: str, changed: float) -> Path:
    """A kernel's directory as the backend leaves it (log, exit, ``io/``), everything last changed at ``changed``."""
    root = kernels / kernel_id
    (root / "io").mkdir(parents=True)
    for name in ("container.log", "exit.json"):
        (root / name).write_text("x")
    for path in (root / "io", root / "container.log", root / "exit.json", root):
        os.utime(path, (changed, changed), follow_symlinks=False)
    return root


def test_a_directory_unchanged_for_the_retention_goes_and_a_younger_one_stays(tmp_path: Path) -> None:
    clock = Clock()
    old = kernel_dir(tmp_path, "k-old", NOW - 8 * DAY)
    young = kernel_dir(tmp_path, "k-young", NOW - 6 * DAY)
    leftovers = Leftovers(tmp_path, 7 * DAY, clock)
    assert leftovers.due() == ["k-old"]
    assert leftovers.remove("k-old") is None
    assert not old.exists() and young.exists()
    assert leftovers.due() == []
    clock.now += DAY
    assert leftovers.due() == ["k-young"]


def test_a_directory_changed_since_it_was_noted_is_due_again_a_retention_after_its_change(tmp_path: Path) -> None:
    clock = Clock()
    root = kernel_dir(tmp_path, "k1", NOW - 8 * DAY)
    leftovers = Leftovers(tmp_path, 7 * DAY, clock)
    assert leftovers.due() == ["k1"]
    os.utime(root / "container.log", (NOW - DAY, NOW - DAY))  # written since (a log saved late)
    again = leftovers.remove("k1")
    assert again == NOW + 6 * DAY
    assert root.exists()
    leftovers.later("k1", again)
    clock.now += 6 * DAY - 1
    assert leftovers.due() == []
    clock.now += 1
    assert leftovers.due() == ["k1"]
    assert leftovers.remove("k1") is None


def test_a_start_notes_its_directory_and_the_first_look_finds_those_already_there(tmp_path: Path) -> None:
    clock = Clock()
    leftovers = Leftovers(tmp_path / "kernels", 7 * DAY, clock)
    assert leftovers.due() == []  # no kernels directory yet
    kernel_dir(tmp_path / "kernels", "k-new", NOW)
    leftovers.began("k-new")
    clock.now += 7 * DAY
    assert leftovers.due() == ["k-new"]


def test_only_kernel_directories_are_ever_removed(tmp_path: Path) -> None:
    """Whatever else lies beside the kernels' directories (a file, a link, a name no kernel id can have) is
    never Berth's to remove; a link inside a kernel's directory is removed, its target kept."""
    clock = Clock()
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "precious").write_text("keep me")
    kernels = tmp_path / "kernels"
    root = kernel_dir(kernels, "k1", NOW - 8 * DAY)
    (root / "io" / "planted").symlink_to(target)
    os.utime(root / "io", (NOW - 8 * DAY, NOW - 8 * DAY))
    (kernels / "notes.txt").write_text("x")
    (kernels / "a link").symlink_to(target)
    (kernels / ".hidden").mkdir()
    for path in (kernels / "notes.txt", kernels / ".hidden"):
        os.utime(path, (NOW - 9 * DAY, NOW - 9 * DAY))
    leftovers = Leftovers(kernels, 7 * DAY, clock)
    assert leftovers.due() == ["k1"]
    assert leftovers.remove("k1") is None
    assert sorted(p.name for p in kernels.iterdir()) == [".hidden", "a link", "notes.txt"]
    assert (target / "precious").read_text() == "keep me"


def test_a_kernel_in_use_keeps_its_directory_and_is_looked_at_again_later(tmp_path: Path) -> None:
    clock = Clock()
    kernel_dir(tmp_path, "k-runs", NOW - 30 * DAY)
    kernel_dir(tmp_path, "k-ended", NOW - 30 * DAY)
    leftovers = Leftovers(tmp_path, 7 * DAY, clock)
    asked: list[str] = []

    async def in_use(kernel_id: str) -> bool:
        asked.append(kernel_id)
        return kernel_id == "k-runs"

    assert asyncio.run(leftovers.sweep(in_use)) == ["k-ended"]
    assert sorted(asked) == ["k-ended", "k-runs"]
    assert (tmp_path / "k-runs").exists()
    assert asyncio.run(leftovers.sweep(in_use)) == []
    clock.now += 7 * DAY
    assert asyncio.run(leftovers.sweep(in_use)) == []
    assert asked[-1] == "k-runs"


def test_a_retention_of_zero_keeps_everything(tmp_path: Path) -> None:
    kernel_dir(tmp_path, "k1", NOW - 365 * DAY)
    leftovers = Leftovers(tmp_path, 0, Clock())
    leftovers.began("k2")
    assert leftovers.due() == []


def test_a_negative_retention_is_refused_naming_its_setting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="BERTH_KERNEL_RETENTION must not be negative"):
        Leftovers(tmp_path, -1)


def test_a_look_that_fails_leaves_the_kernels_not_yet_looked_at_due_for_the_next_sweep(tmp_path: Path) -> None:
    clock = Clock()
    for name in ("k1", "k2", "k3"):
        kernel_dir(tmp_path, name, NOW - 8 * DAY)
    leftovers = Leftovers(tmp_path, 7 * DAY, clock)
    asked: list[str] = []

    async def flaky(kernel_id: str) -> bool:  # the bus answers the first question, then is away
        asked.append(kernel_id)
        if len(asked) > 1:
            raise ConnectionError("bus away")
        return False

    with pytest.raises(ConnectionError):
        asyncio.run(leftovers.sweep(flaky))
    assert not (tmp_path / asked[0]).exists()

    async def not_in_use(kernel_id: str) -> bool:
        return False

    assert sorted(asyncio.run(leftovers.sweep(not_in_use))) == sorted({"k1", "k2", "k3"} - {asked[0]})
    assert not any(tmp_path.iterdir())
