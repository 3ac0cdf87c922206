"""A clone copies regular files only, even when a kernel renames a FIFO over a file's name between the
clone's look at it and its open: the open neither waits for a writer (the folder-event consumer of the
volume would wait for ever) nor copies the FIFO."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from contracts.vfolder import new_folder_id
from services.storage.volume import PosixVolume

PATIENCE = 20.0
"""Seconds the clone may take on a busy machine before it is deemed to wait on the FIFO (then freed)."""


def test_a_fifo_renamed_over_a_file_during_a_clone_is_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    volume = PosixVolume("local", tmp_path / "vol")
    source, clone = new_folder_id(), new_folder_id()
    volume.create(source)
    src = volume.folder_path(source)
    (src / "a.txt").write_text("kept")
    (src / "b.txt").write_text("to be swapped")
    real_open = os.open
    swapped = threading.Event()

    def racing_open(path, flags, mode=0o777, *, dir_fd=None):  # noqa: ANN001, ANN202
        if path == "b.txt" and dir_fd is not None and not swapped.is_set():
            swapped.set()  # the kernel's rename lands between the clone's stat of b.txt and its open
            os.mkfifo(tmp_path / "fifo")
            os.rename(tmp_path / "fifo", src / "b.txt")
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", racing_open)
    cloning = threading.Thread(target=volume.clone, args=(source, clone), daemon=True)
    cloning.start()
    cloning.join(PATIENCE)
    waited = cloning.is_alive()
    if waited:  # free the open waiting for a writer, so that the test ends
        os.close(real_open(src / "b.txt", os.O_WRONLY))
        cloning.join()
    monkeypatch.undo()
    assert swapped.is_set()
    assert not waited, "the clone waited in open() on a FIFO"
    assert sorted(p.name for p in volume.folder_path(clone).iterdir()) == ["a.txt"]
    assert (volume.folder_path(clone) / "a.txt").read_text() == "kept"
