"""Rows that many events of one batch change in turn: read once per batch, changed in memory, written once.

An agent's ``allocations`` (one entry per assigned kernel) is a JSON map that every assignment and
release changes, and a quota scope's sum and session count change with every consumption and release. Read, decoded,
re-encoded and written back per event, a batch paid one round trip (the pipeline syncs on each read)
and an encoding of the whole map per event: the more the agent held, the more each event cost. A
``Tally`` says how to read and write one such row; a batch's ``Tallies`` (``Writer.tallies``) keep the
row of each key for the rest of a pipelined batch (``get``, ``put``; a bulk batch reads those of all its
events first with one statement per kind, ``preload``) and write it when the batch flushes. Applied one
event at a time (a batch retried with a savepoint per event), every ``put`` is written at once, as before.

A row written at the batch's end may be older than a statement another event of the batch ran on it
in between (an agent's ``version`` moved by ``KernelTerminationRequested``, say): a ``Tally``'s write
keeps the larger ``version`` (with its ``updated_at``), so the row ends as applying the events one by
one leaves it, whatever the batches.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Collection, Hashable

__all__ = ["Held", "Tallies", "Tally"]


@dataclass
class Held:
    """One tallied row as the events so far left it: its map (kernel id -> slots: an agent's
    allocations) or, for a row that keeps only a sum (a quota scope, whose holding sessions have rows
    of their own), its ``total`` and ``count``; and the version and time of the latest event that
    changed it; ``extra`` holds what the read model needs to insert the row (a quota scope's scope and
    name)."""

    entries: dict[str, dict[str, Decimal]]
    version: int
    updated_at: dt.datetime | None
    extra: tuple[Any, ...] = field(default=())
    total: dict[str, Decimal] = field(default_factory=dict)
    count: int = 0


@dataclass(frozen=True, eq=False)
class Tally:
    """How a read model reads (``load``: None when the row is missing) and writes (``store``) the
    tallied row of one key. Compared by identity: each read model has one."""

    name: str
    load: Callable[[Any, Hashable], Held | None]
    """Reads the row of a key through a ``Writer`` (not imported here: the writer imports this)."""
    store: Callable[[Any, Hashable, Held], None]
    load_many: Callable[[Any, list[Hashable]], dict[Hashable, Held]] | None = None
    """Reads the rows of many keys with one statement (``Tallies.preload``): those it finds."""
    store_many: Callable[[Any, list[tuple[Hashable, Held]]], None] | None = None
    """Writes the rows of many keys with one statement (``Tallies.flush``), as ``store`` writes each."""


class Tallies:
    """The tallied rows of one batch, read and written through its ``Writer``."""

    def __init__(self, writer: Any, *, pipelined: bool) -> None:
        """Reads and writes through ``writer``; ``pipelined``: rows are kept for the batch and written by
        ``flush`` (else each ``put`` is written at once)."""
        self._writer = writer
        self._pipelined = pipelined
        self._rows: dict[tuple[Tally, Hashable], Held] = {}
        self._changed: dict[tuple[Tally, Hashable], None] = {}
        """The rows changed and not yet written, in the order they were first changed."""

    def get(self, tally: Tally, key: Hashable) -> Held | None:
        """Returns the row of ``key`` as the batch's events so far left it: read from its table the first
        time (a pipeline syncs then), kept for the rest of a pipelined batch; None while there is no such row."""
        held = self._rows.get((tally, key))
        if held is None:
            held = tally.load(self._writer, key)
            if held is not None and self._pipelined:
                self._rows[(tally, key)] = held
        return held

    def preload(self, tally: Tally, keys: Collection[Hashable]) -> None:
        """Reads the rows of ``keys`` with one statement (pipelined, where ``tally`` can), so that the
        batch's events find them kept instead of syncing the pipeline once per row; a key without a row
        is left to ``get`` (the batch may insert it before its first use)."""
        keys = [key for key in keys if (tally, key) not in self._rows]
        if not self._pipelined or not keys or tally.load_many is None:
            return
        for key, held in tally.load_many(self._writer, keys).items():
            self._rows[(tally, key)] = held

    def put(self, tally: Tally, key: Hashable, held: Held) -> None:
        """Records the new state of a row: written by ``flush`` when pipelined, else at once."""
        if not self._pipelined:
            tally.store(self._writer, key, held)
            return
        self._rows[(tally, key)] = held
        self._changed[(tally, key)] = None

    def flush(self) -> None:
        """Writes every row changed since the last flush (each once, with its final state; those of a
        ``Tally`` with ``store_many`` in one statement)."""
        changed, self._changed = self._changed, {}
        by_tally: dict[Tally, list[tuple[Hashable, Held]]] = {}
        for tally, key in changed:
            by_tally.setdefault(tally, []).append((key, self._rows[(tally, key)]))
        for tally, items in by_tally.items():
            if tally.store_many is not None and len(items) > 1:
                tally.store_many(self._writer, items)
                continue
            for key, held in items:
                tally.store(self._writer, key, held)
