"""The statements of the read models, run on one connection either directly or pipelined.

Pipelined (psycopg pipeline mode), a whole batch goes to the server without waiting for
each result, and inserts are deferred: rows of the same kind accumulate and go in one
bulk statement, flushed before any other statement (so an update always finds the rows
inserted before it) or, for rows nothing else touches, at the end of the batch. The
"exactly one row" expectations of updates are checked after the pipeline syncs
(``verify``). Directly (one savepoint per event), everything runs and is checked at once.

In bulk (a rebuild), a new row deferred with a ``key`` is held in memory instead (``held``): the
batch's later events change it there rather than with one statement each (its read model asks
``held`` first; a row from an earlier batch is changed with a statement as ever), and it is written
once, as the batch's events left it. A rebuild's batch holds most of a session's history, so most
rows are written once, not once per event.

In bulk, the rows still deferred when the batch ends do not go as statements
in the pipeline: ``copy_pending`` sends them with ``COPY ... FROM STDIN (FORMAT BINARY)`` once the
pipeline is closed (COPY cannot run in pipeline mode): each value in its column type's binary
form, which psycopg writes in C and the server takes without parsing text (a third of the client's
time of text COPY), JSON values as the statement's JSON text.
"""

from __future__ import annotations

from typing import Any, Collection, Hashable, Iterable, Mapping, Sequence

import msgspec
import psycopg
from psycopg.types.json import set_json_dumps

from projections.errors import DuplicateRowError, MissingRowError
from projections.tallies import Held, Tally

__all__ = ["BulkInsert", "Writer", "bulk_insert"]

_encoder = msgspec.json.Encoder(decimal_format="string")


class BulkInsert:
    """Inserts deferred rows (tuples in ``columns`` order) into ``table``: as one statement whose
    only parameter is the rows as a JSON array (``json_to_recordset``), or with ``COPY``.
    ``columns`` are (name, SQL type) pairs; values are encoded as the events encode them
    (decimals as strings, timestamps in RFC 3339), JSON columns take mappings as they are.
    With a ``key`` (the primary key's one column), rows of the table can be held (``Writer.preload``)."""

    def __init__(self, table: str, columns: Sequence[tuple[str, str]], key: str | None = None) -> None:
        """Prepares the statements of ``table``."""
        self.table = table
        self.names = [name for name, _ in columns]
        self._types = [kind for _, kind in columns]
        names = ", ".join(self.names)
        self._insert = (
            f"INSERT INTO {table} ({names}) SELECT {names} FROM json_to_recordset(%s::json)"
            f" AS r({', '.join(f'{name} {kind}' for name, kind in columns)})"
        )
        self._copy = f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)"
        self.select_keys = f"SELECT {key}, {names} FROM {table} WHERE {key} = ANY(%s)" if key else None
        self.delete_keys = f"DELETE FROM {table} WHERE {key} = ANY(%s)" if key else None

    def __call__(self, writer: Writer, rows: list[Any]) -> None:
        """Inserts ``rows`` with one statement through ``writer``."""
        writer.execute(self._insert, (_encoder.encode([dict(zip(self.names, row)) for row in rows]).decode(),))

    def copy(self, cur: psycopg.Cursor, rows: list[Any]) -> None:
        """Inserts ``rows`` with a binary ``COPY`` on ``cur`` (not in pipeline mode): each value is
        dumped as its column's type (a JSON value as the JSON text the statement would have held,
        so both give the same rows)."""
        set_json_dumps(_encoder.encode, context=cur)
        with cur.copy(self._copy) as copy:  # type: ignore[arg-type]
            copy.set_types(self._types)
            for row in rows:
                copy.write_row(row)


class Writer:
    """Runs read-model statements; defers bulk inserts and pipelined row-count checks."""

    def __init__(self, conn: psycopg.Connection, *, pipelined: bool, hold: bool = False) -> None:
        """Writes through ``conn``; ``pipelined`` when the caller opened ``conn.pipeline()``; ``hold``
        (bulk, pipelined only): new rows deferred with a key are held in memory (``held``)."""
        self._conn = conn
        self._cur = conn.cursor()
        self._pipelined = pipelined
        self._held: dict[BulkInsert, dict[Hashable, Any]] | None = {} if hold and pipelined else None
        """Per insert, the held rows by key: as deferred (a tuple) until ``held`` first returns one (a dict)."""
        self._loaded: dict[BulkInsert, dict[Hashable, bool]] = {}
        """Per insert, the keys of the held rows read from the table (``preload``): whether ``held`` gave it."""
        self._replaced: dict[BulkInsert, list[Hashable]] = {}
        """Per insert, the keys whose rows in the table go before the held rows are written."""
        self._expectations: list[tuple[psycopg.Cursor, str]] = []
        self._ordered: dict[BulkInsert, list[Any]] = {}
        self._unordered: dict[BulkInsert, list[Any]] = {}
        self._tallies: dict[tuple[Tally, Hashable], Held] = {}
        self._changed: dict[tuple[Tally, Hashable], None] = {}
        """The tallied rows changed and not yet written, in the order they were first changed."""

    def tally(self, tally: Tally, key: Hashable) -> Held | None:
        """Returns the tallied row of ``key`` as the batch's events so far left it: read from its
        table the first time (a pipeline syncs then), kept for the rest of a pipelined batch; None
        while there is no such row."""
        held = self._tallies.get((tally, key))
        if held is None:
            held = tally.load(self, key)
            if held is not None and self._pipelined:
                self._tallies[(tally, key)] = held
        return held

    def preload_tallies(self, tally: Tally, keys: Collection[Hashable]) -> None:
        """Reads the tallied rows of ``keys`` with one statement (pipelined, where ``tally`` can), so that
        the batch's events find them held instead of syncing the pipeline once per row; a key without a
        row is left to ``tally`` (the batch may insert it before its first use)."""
        keys = [key for key in keys if (tally, key) not in self._tallies]
        if not self._pipelined or not keys or tally.load_many is None:
            return
        for key, held in tally.load_many(self, keys).items():
            self._tallies[(tally, key)] = held

    def put_tally(self, tally: Tally, key: Hashable, held: Held) -> None:
        """Records the new state of a tallied row: written at ``flush`` when pipelined, else at once."""
        if not self._pipelined:
            tally.store(self, key, held)
            return
        self._tallies[(tally, key)] = held
        self._changed[(tally, key)] = None

    def defer(self, insert: BulkInsert, row: Any, *, ordered: bool = True, key: Hashable = None) -> None:
        """Queues ``row`` for ``insert`` (at once when not pipelined). ``ordered`` rows are
        flushed before the next other statement; the others only by ``flush``. With a ``key``
        (the row's primary key) and rows held (bulk), the row is held in memory for ``held``;
        raises ``DuplicateRowError`` when the batch holds that key already."""
        if not self._pipelined:
            insert(self, [row])
            return
        if key is not None and self._held is not None:
            rows = self._held.setdefault(insert, {})
            if key in rows:
                raise DuplicateRowError(f"{insert.table} {key!r} is inserted twice")
            rows[key] = row
            return
        (self._ordered if ordered else self._unordered).setdefault(insert, []).append(row)

    def discard(self, insert: BulkInsert, key: Hashable) -> bool:
        """Drops the row of ``key`` that this batch holds (it is not written; one read from the table
        is deleted with the batch's writes); False when it holds none: the row, if any, is in the table."""
        rows = self._held.get(insert) if self._held is not None else None
        if not rows or key not in rows:
            return False
        del rows[key]
        if self._loaded.get(insert, {}).pop(key, None) is not None:
            self._replaced.setdefault(insert, []).append(key)
        return True

    def preload(self, insert: BulkInsert, keys: Collection[Hashable]) -> None:
        """Holds the rows of ``keys`` that the table has (rows held only: a rebuild's or a large batch),
        read with one statement, so that the batch's events change them in memory, as they change the
        rows it inserts. A row ``held`` gave is written back whole: deleted, then copied with the new
        rows (one statement and the COPY, where each change was one statement)."""
        if self._held is None or not keys or insert.select_keys is None:
            return
        rows = self._held.setdefault(insert, {})
        loaded = self._loaded.setdefault(insert, {})
        for key, *values in self.fetchall(insert.select_keys, (list(keys),)):
            if key in rows:  # inserted by this batch already: its own row wins, as the table's would refuse it
                continue
            rows[key] = dict(zip(insert.names, values))
            loaded[key] = False

    def held(self, insert: BulkInsert, key: Hashable) -> dict[str, Any] | None:
        """Returns the row of ``key`` that this batch inserted or read (``preload``) and holds in memory
        (column name -> value; changes to it are written with it), None when it holds none: the row,
        if any, is then in the table."""
        rows = self._held.get(insert) if self._held is not None else None
        row = rows.get(key) if rows else None
        if row is not None and key in self._loaded.get(insert, ()):
            self._loaded[insert][key] = True
        if row is None or isinstance(row, dict):
            return row
        rows[key] = row = dict(zip(insert.names, row))  # changed from now on: by name
        return row

    def execute(self, query: str, params: Sequence[Any] = ()) -> None:
        """Runs one statement (after the ordered deferred inserts)."""
        self._flush(self._ordered)
        self._cur.execute(query, params)  # type: ignore[arg-type]

    def executemany(self, query: str, params: Iterable[Sequence[Any]]) -> None:
        """Runs one statement per parameter set (after the ordered deferred inserts)."""
        self._flush(self._ordered)
        self._cur.executemany(query, params)  # type: ignore[arg-type]

    def execute_one(self, query: str, params: Sequence[Any] | Mapping[str, Any], missing: str) -> None:
        """Runs an update that must change exactly one row; raises ``MissingRowError(missing)``
        otherwise (at once, or at ``verify`` when pipelined)."""
        self._flush(self._ordered)
        if self._pipelined:
            cur = self._conn.cursor()
            cur.execute(query, params)  # type: ignore[arg-type]
            self._expectations.append((cur, missing))
            return
        self._cur.execute(query, params)  # type: ignore[arg-type]
        if self._cur.rowcount != 1:
            raise MissingRowError(missing)

    def fetchone(self, query: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        """Runs a query and returns its first row (a pipeline syncs here)."""
        self._flush(self._ordered)
        return self._cur.execute(query, params).fetchone()  # type: ignore[arg-type]

    def fetchall(self, query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Runs a query and returns its rows (a pipeline syncs here)."""
        self._flush(self._ordered)
        return self._cur.execute(query, params).fetchall()  # type: ignore[arg-type]

    def flush(self) -> None:
        """Sends every deferred insert and held row, and writes every changed tallied row."""
        self.flush_tallies()
        self._release_held()
        self._flush(self._ordered)
        self._flush(self._unordered)
        self._delete_discarded()

    def flush_tallies(self) -> None:
        """Writes every tallied row changed since the last flush (each once, with its final state)."""
        changed, self._changed = self._changed, {}
        for tally, key in changed:
            tally.store(self, key, self._tallies[(tally, key)])

    def copy_pending(self) -> None:
        """Sends every deferred insert and held row with ``COPY`` (call once the pipeline is closed)."""
        self._release_held()
        for pending in (self._ordered, self._unordered):
            while pending:
                insert, rows = pending.popitem()
                self._delete_replaced(insert)
                if rows:
                    insert.copy(self._cur, rows)
        self._delete_discarded()

    def verify(self) -> None:
        """Checks the pipelined expectations; call after the pipeline synced."""
        expectations, self._expectations = self._expectations, []
        for cur, missing in expectations:
            if cur.rowcount != 1:
                raise MissingRowError(missing)

    def _release_held(self) -> None:
        """Queues the held rows, as the batch left them, with the inserts that nothing else touches."""
        if not self._held:
            return
        for insert, rows in self._held.items():
            width = len(insert.names)
            pending = self._unordered.setdefault(insert, [])
            loaded = self._loaded.get(insert, {})
            for key, row in rows.items():
                if not isinstance(row, dict):
                    pending.append(row)
                    continue
                if key in loaded:
                    if not loaded[key]:
                        continue  # read, never changed: the table has it as it is
                    self._replaced.setdefault(insert, []).append(key)
                if len(row) != width:  # its values are in column order only while no key was added
                    raise ValueError(f"held {insert.table} row {key!r} has columns {sorted(row)}, not {insert.names}")
                pending.append(tuple(row.values()))
        self._held.clear()
        self._loaded.clear()

    def _delete_discarded(self) -> None:
        """Deletes the rows read from a table and discarded, that no held row replaces."""
        for insert in list(self._replaced):
            self._delete_replaced(insert)

    def _delete_replaced(self, insert: BulkInsert) -> None:
        """Deletes the table's rows that held rows of ``insert`` replace (before they are written)."""
        keys = self._replaced.pop(insert, None)
        if keys:
            assert insert.delete_keys is not None  # keys are replaced only where rows were preloaded
            self._cur.execute(insert.delete_keys, (keys,))

    def _flush(self, pending: dict[BulkInsert, list[Any]]) -> None:
        while pending:
            insert, rows = pending.popitem()
            self._delete_replaced(insert)
            if rows:
                insert(self, rows)


def bulk_insert(table: str, columns: Sequence[tuple[str, str]], key: str | None = None) -> BulkInsert:
    """Returns the ``BulkInsert`` of rows (tuples in ``columns`` order) into ``table``; ``key``: see ``BulkInsert``."""
    return BulkInsert(table, columns, key)
