"""The rows a bulk batch holds in memory (``Writer(..., hold=True)``): bookkeeping only, no I/O.

A row is held when the batch inserts it (``add``) or reads it from its table first (``load``: the
rows its events change, ``Writer.preload``). The batch's later events change it in memory (``get``
gives it as a dict by column) or drop it (``discard``). ``release`` then says what to write: every
held row as the batch left it, and the keys whose rows the table has and must lose first (a row read
and changed is written back whole; one read and discarded is only deleted). A row read and never
changed is neither: the table has it as it is.
"""

from __future__ import annotations

from typing import Any, Hashable, Iterable, Protocol, Sequence

from projections.errors import DuplicateRowError

__all__ = ["HeldRows", "Insert", "Release"]


class Insert(Protocol):
    """What rows are held by: a table's insert (``projections.writer.BulkInsert``)."""

    table: str
    names: Sequence[str]


Release = tuple[dict[Insert, list[tuple[Any, ...]]], dict[Insert, list[Hashable]]]
"""What ``release`` gives: per insert, the rows to write (tuples in column order) and the keys to
delete from the table before they are written."""


class HeldRows:
    """The rows of one batch held in memory, per insert and key."""

    def __init__(self) -> None:
        self._rows: dict[Insert, dict[Hashable, Any]] = {}
        """Per insert, the rows by key: as added (a tuple) until ``get`` first gives one (a dict)."""
        self._loaded: dict[Insert, dict[Hashable, bool]] = {}
        """Per insert, the keys read from the table: whether ``get`` gave the row since."""
        self._deleted: dict[Insert, list[Hashable]] = {}
        """Per insert, the keys read from the table and discarded."""

    def add(self, insert: Insert, key: Hashable, row: tuple[Any, ...]) -> None:
        """Holds the new row ``row`` of ``key``; raises ``DuplicateRowError`` when one is held already
        (as the table's primary key would refuse it)."""
        rows = self._rows.setdefault(insert, {})
        if key in rows:
            raise DuplicateRowError(f"{insert.table} {key!r} is inserted twice")
        rows[key] = row

    def load(self, insert: Insert, found: Iterable[tuple[Any, ...]]) -> None:
        """Holds the rows read from the table (each its key, then its values in column order), but
        not over a row the batch holds already."""
        rows = self._rows.setdefault(insert, {})
        loaded = self._loaded.setdefault(insert, {})
        for key, *values in found:
            if key not in rows:
                rows[key] = dict(zip(insert.names, values))
                loaded[key] = False

    def get(self, insert: Insert, key: Hashable) -> dict[str, Any] | None:
        """Returns the held row of ``key`` to be changed (a dict by column; changes to it are written
        with it), None when none is held."""
        rows = self._rows.get(insert)
        row = rows.get(key) if rows else None
        if row is None:
            return None
        loaded = self._loaded.get(insert)
        if loaded and key in loaded:
            loaded[key] = True
        if not isinstance(row, dict):
            rows[key] = row = dict(zip(insert.names, row))  # changed from now on: by name  # type: ignore[index]
        return row

    def discard(self, insert: Insert, key: Hashable) -> bool:
        """Drops the held row of ``key`` (a row read from the table is then deleted from it); False
        when none is held."""
        rows = self._rows.get(insert)
        if not rows or key not in rows:
            return False
        del rows[key]
        if self._loaded.get(insert, {}).pop(key, None) is not None:
            self._deleted.setdefault(insert, []).append(key)
        return True

    def release(self) -> Release:
        """Returns what to write (see ``Release``) and holds nothing from then on."""
        writes: dict[Insert, list[tuple[Any, ...]]] = {}
        deletes = self._deleted
        for insert, rows in self._rows.items():
            width = len(insert.names)
            loaded = self._loaded.get(insert, {})
            for key, row in rows.items():
                if isinstance(row, dict):
                    if loaded.get(key) is False:
                        continue  # read, never changed: the table has it as it is
                    if len(row) != width:  # its values are in column order only while no key was added
                        raise ValueError(f"held {insert.table} row {key!r} has columns {sorted(row)}, not {insert.names}")
                    if key in loaded:
                        deletes.setdefault(insert, []).append(key)
                    row = tuple(row.values())
                writes.setdefault(insert, []).append(row)
        self._rows, self._loaded, self._deleted = {}, {}, {}
        return writes, deletes
