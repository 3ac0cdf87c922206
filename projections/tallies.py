"""Rows that many events of one batch change in turn: read once per batch, changed in memory, written once.

An agent's ``allocations`` (one entry per assigned kernel) is a JSON map that every assignment and
release changes, and a quota scope's sum and session count change with every consumption and release. Read, decoded,
re-encoded and written back per event, a batch paid one round trip (the pipeline syncs on each read)
and an encoding of the whole map per event: the more the agent held, the more each event cost. A
``Tally`` says how to read and write one such row; ``Writer.tally`` / ``Writer.put_tally``
(``projections.writer``) keep the row of each key for the rest of a pipelined batch and write it when
the batch flushes. Applied one event at a time (a batch retried with a savepoint per event), every
``put_tally`` is written at once, as before.

A row written at the batch's end may be older than a statement another event of the batch ran on it
in between (an agent's ``version`` moved by ``KernelTerminationRequested``, say): a ``Tally``'s write
keeps the larger ``version`` (with its ``updated_at``), so the row ends as applying the events one by
one leaves it, whatever the batches.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Hashable

__all__ = ["Held", "Tally"]


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
    """Reads the rows of many keys with one statement (``Writer.preload_tallies``): those it finds."""
