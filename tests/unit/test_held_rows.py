"""What a bulk batch writes of the rows it holds (``projections.held_rows``): pure bookkeeping."""

from __future__ import annotations

import pytest

from projections.errors import DuplicateRowError
from projections.held_rows import HeldRows
from projections.writer import bulk_insert

ROWS = bulk_insert("things", [("id", "text"), ("state", "text")], key="id")


def test_a_new_row_is_written_as_the_batch_left_it_and_a_discarded_one_not_at_all() -> None:
    held = HeldRows()
    held.add(ROWS, "a", ("a", "new"))
    held.add(ROWS, "b", ("b", "new"))
    held.add(ROWS, "c", ("c", "new"))
    held.get(ROWS, "b")["state"] = "changed"  # type: ignore[index]
    assert held.discard(ROWS, "c") and not held.discard(ROWS, "zzz")
    assert held.release() == ({ROWS: [("a", "new"), ("b", "changed")]}, {})
    assert held.release() == ({}, {}) and held.get(ROWS, "a") is None  # nothing held after a release


def test_a_row_read_from_the_table_is_written_back_only_when_changed_and_deleted_when_discarded() -> None:
    held = HeldRows()
    held.add(ROWS, "new", ("new", "inserted"))
    held.load(ROWS, [("kept", "kept", "as is"), ("changed", "changed", "old"), ("gone", "gone", "old"),
                     ("new", "new", "from the table")])
    held.get(ROWS, "changed")["state"] = "new"  # type: ignore[index]
    held.discard(ROWS, "gone")
    writes, deletes = held.release()
    assert writes == {ROWS: [("new", "inserted"), ("changed", "new")]}  # the batch's own row wins over a read one
    assert sorted(deletes[ROWS]) == ["changed", "gone"]


def test_a_key_held_twice_is_refused() -> None:
    held = HeldRows()
    held.load(ROWS, [("a", "a", "in the table")])
    with pytest.raises(DuplicateRowError):
        held.add(ROWS, "a", ("a", "again"))
