"""The statements of the read models, run on one connection either directly or pipelined.

Pipelined (psycopg pipeline mode), a whole batch goes to the server without waiting for
each result, and inserts are deferred: rows of the same kind accumulate and go in one
bulk statement, flushed before any other statement (so an update always finds the rows
inserted before it) or, for rows nothing else touches, at the end of the batch. The
"exactly one row" expectations of updates are checked after the pipeline syncs
(``verify``). Directly (one savepoint per event), everything runs and is checked at once.

In bulk (a rebuild, a large live batch), a new row deferred with a ``key`` is held in memory instead
(``held``): the batch's later events change it there rather than with one statement each (its read
model asks ``held`` first), and it is written once, as the batch's events left it. A rebuild's batch
holds most of a session's history, so most rows are written once, not once per event. A bulk batch
also reads first the rows of earlier batches that its events change (``preload``: one statement per
table, for ``PRELOAD_FROM`` rows or more) and holds them the same way: each one changed is written
back whole, deleted and copied (``projections.held_rows`` keeps the books). Any other row of an
earlier batch is changed with a statement, as ever.

In bulk, the rows still deferred when the batch ends do not go as statements
in the pipeline: ``copy_pending`` sends them with ``COPY ... FROM STDIN (FORMAT BINARY)`` once the
pipeline is closed (COPY cannot run in pipeline mode): each value in its column type's binary
form, which psycopg writes in C and the server takes without parsing text (a third of the client's
time of text COPY), JSON values as the statement's JSON text.

A bulk batch also copies rows that depend on nothing it projects (the event log's) beside its
projecting (``copying_beside``): the COPY runs on a thread of its own while the batch's events are
projected in Python, so that the server stores those rows while the client builds the others. The
connection is the COPY's meanwhile: the statements asked for are recorded and sent, in order, by
``settle`` (a read settles first).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Collection, Hashable, Iterator, Mapping, Sequence

import msgspec
import psycopg
from psycopg.types.json import set_json_dumps

from projections.errors import MissingRowError
from projections.held_rows import HeldRows
from projections.tallies import Tallies

__all__ = ["PRELOAD_FROM", "BulkInsert", "Writer", "bulk_insert"]

_encoder = msgspec.json.Encoder(decimal_format="string")

PRELOAD_FROM = 8
"""``preload`` reads rows only for this many keys or more: the read syncs the pipeline (0.4-1 ms in a
rebuild, whose batches cut one or two histories apart), where fewer rows cost less as a statement each."""


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


_Statement = tuple[str, Any, "tuple[int, str] | None"]
"""A statement, its parameters and what it must change (rows, ``MissingRowError`` message), or None."""


class _Copying:
    """A ``COPY`` of rows on a thread of its own (``Writer.copying_beside``), and the statements recorded meanwhile."""

    def __init__(self, cur: psycopg.Cursor, insert: BulkInsert, rows: list[Any]) -> None:
        self.recorded: list[_Statement] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._copy, args=(cur, insert, rows), name="copy-beside", daemon=True)
        self._thread.start()

    def _copy(self, cur: psycopg.Cursor, insert: BulkInsert, rows: list[Any]) -> None:
        try:
            insert.copy(cur, rows)
        except BaseException as exc:  # noqa: BLE001 - raised by ``wait``, on the batch's thread
            self._error = exc

    def wait(self) -> None:
        """Returns once the copy is done; raises what it raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error


class Writer:
    """Runs read-model statements; defers bulk inserts and pipelined row-count checks."""

    def __init__(self, conn: psycopg.Connection, *, pipelined: bool, hold: bool = False) -> None:
        """Writes through ``conn``; ``pipelined`` when the caller opened ``conn.pipeline()``; ``hold``
        (bulk, pipelined only): new rows deferred with a key are held in memory (``held``)."""
        self._conn = conn
        self._cur = conn.cursor()
        self._pipelined = pipelined
        self._held = HeldRows() if hold and pipelined else None
        self._expectations: list[tuple[psycopg.Cursor, int, str]] = []
        self._ordered: dict[BulkInsert, list[Any]] = {}
        self._unordered: dict[BulkInsert, list[Any]] = {}
        self._copying: _Copying | None = None
        self.tallies = Tallies(self, pipelined=pipelined)
        """The batch's tallied rows (``projections.tallies``)."""

    def defer(self, insert: BulkInsert, row: Any, *, ordered: bool = True, key: Hashable = None) -> None:
        """Queues ``row`` for ``insert`` (at once when not pipelined). ``ordered`` rows are
        flushed before the next other statement; the others only by ``flush``. With a ``key``
        (the row's primary key) and rows held (bulk), the row is held in memory for ``held``;
        raises ``DuplicateRowError`` when the batch holds that key already."""
        if not self._pipelined:
            insert(self, [row])
            return
        if key is not None and self._held is not None:
            self._held.add(insert, key, row)
            return
        (self._ordered if ordered else self._unordered).setdefault(insert, []).append(row)

    def discard(self, insert: BulkInsert, key: Hashable) -> bool:
        """Drops the row of ``key`` that this batch holds (it is not written; one read from the table
        is deleted with the batch's writes); False when it holds none: the row, if any, is in the table."""
        return self._held is not None and self._held.discard(insert, key)

    def preload(self, insert: BulkInsert, keys: Collection[Hashable]) -> None:
        """Holds the rows of ``keys`` that the table has (rows held only: a rebuild's or a large batch;
        ``PRELOAD_FROM`` keys or more), read with one statement, so that the batch's events change them
        in memory, as they change the rows it inserts. A row that ``held`` gave out is written back
        whole: deleted, then copied with the new rows (one statement and the COPY, where each change
        was one statement)."""
        if self._held is not None and len(keys) >= PRELOAD_FROM and insert.select_keys is not None:
            self._held.load(insert, self.fetchall(insert.select_keys, (list(keys),)))

    def held(self, insert: BulkInsert, key: Hashable) -> dict[str, Any] | None:
        """Returns the row of ``key`` that this batch inserted or read (``preload``) and holds in memory
        (column name -> value; changes to it are written with it), None when it holds none: the row,
        if any, is then in the table."""
        return self._held.get(insert, key) if self._held is not None else None

    def execute(self, query: str, params: Sequence[Any] = ()) -> None:
        """Runs one statement (after the ordered deferred inserts)."""
        self._flush(self._ordered)
        self._send((query, params, None))

    def execute_one(self, query: str, params: Sequence[Any] | Mapping[str, Any], missing: str, rows: int = 1) -> None:
        """Runs an update that must change exactly one row (or ``rows``); raises ``MissingRowError(missing)``
        otherwise (at once, or at ``verify`` when pipelined)."""
        self._flush(self._ordered)
        self._send((query, params, (rows, missing)))

    def fetchone(self, query: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        """Runs a query and returns its first row (a pipeline syncs here)."""
        self._flush(self._ordered)
        self.settle()
        return self._cur.execute(query, params).fetchone()  # type: ignore[arg-type]

    def fetchall(self, query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Runs a query and returns its rows (a pipeline syncs here)."""
        self._flush(self._ordered)
        self.settle()
        return self._cur.execute(query, params).fetchall()  # type: ignore[arg-type]

    @contextlib.contextmanager
    def copying_beside(self, insert: BulkInsert, rows: list[Any]) -> Iterator[None]:
        """Copies ``rows`` with ``insert``'s ``COPY`` on a thread of its own while the block runs (the connection
        not in a pipeline; rows that nothing else in the batch reads or changes). Until ``settle``, the
        statements asked for are recorded; a read settles first. Leaving the block waits for the copy and
        raises what it raised (unless the block raised)."""
        self.settle()
        if not rows:
            yield
            return
        copying = self._copying = _Copying(self._conn.cursor(), insert, rows)
        try:
            yield
        except BaseException:
            self._copying = None  # the batch failed: its transaction goes, and what was recorded with it
            with contextlib.suppress(Exception):
                copying.wait()
            raise
        copying.wait()

    def settle(self) -> None:
        """Waits for the copy beside, if one runs (raising what it raised), then sends the statements recorded
        meanwhile, in order (pipelined when the caller opened the pipeline again)."""
        copying, self._copying = self._copying, None
        if copying is None:
            return
        copying.wait()
        for statement in copying.recorded:
            self._send(statement)

    def flush(self) -> None:
        """Sends every deferred insert and held row, and writes every changed tallied row."""
        self.settle()
        self.tallies.flush()
        self._release_held()
        self._flush(self._ordered)
        self._flush(self._unordered)

    def copy_pending(self) -> None:
        """Sends every deferred insert and held row with ``COPY`` (call once the pipeline is closed)."""
        self.settle()
        self._release_held()
        for pending in (self._ordered, self._unordered):
            while pending:
                insert, rows = pending.popitem()
                insert.copy(self._cur, rows)

    def verify(self) -> None:
        """Checks the pipelined expectations; call after the pipeline synced."""
        expectations, self._expectations = self._expectations, []
        for cur, rows, missing in expectations:
            if cur.rowcount != rows:
                raise MissingRowError(missing)

    def _release_held(self) -> None:
        """Deletes the table's rows that held rows replace or that were discarded, then queues the held
        rows, as the batch left them, with the inserts that nothing else touches."""
        if self._held is None:
            return
        writes, deletes = self._held.release()
        for insert, keys in deletes.items():
            assert insert.delete_keys is not None  # rows are deleted only where they were preloaded
            self._cur.execute(insert.delete_keys, (keys,))
        for insert, rows in writes.items():
            self._unordered.setdefault(insert, []).extend(rows)

    def _send(self, statement: _Statement) -> None:
        """Runs a statement, or records it while a copy runs beside; one that must change some rows is checked at
        once, or by ``verify`` when pipelined."""
        if self._copying is not None:
            self._copying.recorded.append(statement)
            return
        query, params, expected = statement
        if expected is None:
            self._cur.execute(query, params)  # type: ignore[arg-type]
            return
        rows, missing = expected
        if self._pipelined:
            cur = self._conn.cursor()
            cur.execute(query, params)  # type: ignore[arg-type]
            self._expectations.append((cur, rows, missing))
            return
        self._cur.execute(query, params)  # type: ignore[arg-type]
        if self._cur.rowcount != rows:
            raise MissingRowError(missing)

    def _flush(self, pending: dict[BulkInsert, list[Any]]) -> None:
        while pending:
            insert, rows = pending.popitem()
            insert(self, rows)


def bulk_insert(table: str, columns: Sequence[tuple[str, str]], key: str | None = None) -> BulkInsert:
    """Returns the ``BulkInsert`` of rows (tuples in ``columns`` order) into ``table``; ``key``: see ``BulkInsert``."""
    return BulkInsert(table, columns, key)
