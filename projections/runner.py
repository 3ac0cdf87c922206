"""Applies a batch of stream messages to every read model in ONE transaction, with the position.

The position row is locked first (``FOR UPDATE``), so that two projectors never apply
the same batch and a caller that resumes from a stale position is told so
(``PositionMovedError``). A message that cannot be applied is handed to ``on_reject``
(the dead letters) before the commit, and the position moves past it.

Fast path: the whole batch in one transaction, pipelined (one round trip to the server
for all its statements). If applying an event fails for any reason other than the
database connection, the batch is applied again with a savepoint per event, and only
the failing events are rejected.

Bulk (``bulk=True``: a rebuild, and the live projector's large batches): the same, but the batch
holds the rows it inserts in memory (``Writer.held``) and the rows still deferred at the end of the
batch go with ``COPY`` after the pipeline closes (``Writer.copy_pending``); the event log's rows, which
depend on nothing the batch projects, are copied first, on a thread, while the events are projected
(``Writer.copying_beside``): the server stores them while Python builds the other rows
(``bench_pipeline.py`` (d) on two cores: a fifth less time applying the batches, 0.83-0.89 s down to
0.62-0.68 s for 20,000 events). Not ``durable`` (a rebuild), the transaction commits with
``synchronous_commit = off``: a crash can lose only the last batches, rows and position together, which
the replay then applies again.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Any, Callable, NamedTuple, Sequence

import psycopg

from projections import agents, event_log, kernels, quota_usage, sessions, tenancy, vfolders
from projections.delivery import Delivery, Entry, Rejected, check
from projections.errors import PositionMovedError
from projections.position import POSITION_CHANNEL, PROJECTION, Position
from projections.writer import Writer

__all__ = ["BatchResult", "DeadLetterError", "EVENT_MODELS", "PRELOADED", "apply_batch", "handlers", "project"]

log = logging.getLogger(__name__)

EVENT_MODELS = (sessions, kernels, agents, quota_usage, tenancy, vfolders)
"""The read models that apply events by type (each with its ``apply_event``), in the order they apply an
event, after the event log (which takes every message, known type or not)."""
PRELOADED = (sessions, kernels, agents, quota_usage)
"""The read models whose rows a bulk batch reads first, one statement each, and changes in memory
(``Writer.preload``, ``Tallies.preload``)."""

RejectHandler = Callable[[Rejected], None]

_INFRASTRUCTURE = (psycopg.OperationalError, psycopg.InterfaceError)


class BatchResult(NamedTuple):
    """What a batch did: the position reached, and how many messages were applied or rejected."""

    position: int
    stream_seq: int
    applied: int
    rejected: int


class DeadLetterError(RuntimeError):
    """Raised when ``on_reject`` failed; the batch was rolled back and may be retried."""


Handler = Callable[[Any, Writer, Entry], None]
"""A read model's ``apply_event`` for one event type: (event, writer, entry)."""


def project(w: Writer, entry: Entry) -> None:
    """Applies one accepted entry to every read model."""
    event_log.project(w, entry)
    _project_models(w, entry)


def _project_models(w: Writer, entry: Entry) -> None:
    """Applies one accepted entry to every read model but the event log."""
    if entry.event is not None:
        for handle in handlers(type(entry.event)):
            handle(entry.event, w, entry)


@functools.cache
def handlers(event_type: type) -> tuple[Handler, ...]:
    """Returns the handlers of ``event_type`` of the read models it changes, in ``EVENT_MODELS`` order:
    looked up once per type (``singledispatch`` looks one up on each call: six per event, 3 µs), and
    without the defaults that change nothing."""
    found = ((model.apply_event.dispatch(event_type), model.apply_event.registry[object]) for model in EVENT_MODELS)
    return tuple(handler for handler, default in found if handler is not default)


def apply_batch(
    conn: psycopg.Connection,
    deliveries: Sequence[Delivery],
    *,
    on_reject: RejectHandler,
    expected_stream_seq: int | None = None,
    bulk: bool = False,
    durable: bool = True,
    checked: Sequence[Entry | Rejected] | None = None,
) -> BatchResult:
    """Applies ``deliveries`` (in stream order) and moves the position, in one transaction.

    Messages at or below the stored stream sequence are skipped (already applied).
    Raises ``PositionMovedError`` when ``expected_stream_seq`` is given and differs from
    the stored one, ``DeadLetterError`` when ``on_reject`` fails, and psycopg's
    ``OperationalError``/``InterfaceError`` when the database is unreachable; in each case
    nothing was applied. ``conn`` must be in autocommit mode (transactions are explicit).
    ``bulk`` and ``durable``: see the module's documentation. ``checked``: what ``check`` returns for
    each delivery, when the caller has it already (a rebuild checks the next batch while one is
    applied); else each delivery is checked here.
    """
    results = [check(delivery) for delivery in deliveries] if checked is None else checked
    pairs = list(zip(deliveries, results, strict=True))
    try:
        return _apply(conn, pairs, on_reject, expected_stream_seq, isolate=False, bulk=bulk, durable=durable)
    except (*_INFRASTRUCTURE, PositionMovedError, DeadLetterError):
        raise
    except Exception as exc:  # noqa: BLE001 - a poison event: find it with one savepoint per event
        log.warning("batch failed (%s: %s); applying it event by event", type(exc).__name__, exc)
        return _apply(conn, pairs, on_reject, expected_stream_seq, isolate=True)


def _apply(
    conn: psycopg.Connection,
    checked: list[tuple[Delivery, Entry | Rejected]],
    on_reject: RejectHandler,
    expected_stream_seq: int | None,
    isolate: bool,
    bulk: bool = False,
    durable: bool = True,
) -> BatchResult:
    """One attempt: in bulk (``_apply_bulk``), pipelined in one go, or (``isolate``) one savepoint per event."""
    with conn.transaction():
        start = _lock_position(conn)
        if not durable:
            conn.execute("SET LOCAL synchronous_commit = off")
        if expected_stream_seq is not None and start.stream_seq != expected_stream_seq:
            raise PositionMovedError(expected_stream_seq, start.stream_seq)
        if bulk and not isolate:
            rejects, reached, applied = _apply_bulk(conn, checked, start)
        else:
            rejects, reached, applied = _apply_each(conn, checked, start, isolate)
        for rejected in rejects:
            _reject(on_reject, rejected)
    return BatchResult(reached.position, reached.stream_seq, applied, len(rejects))


def _apply_each(conn: psycopg.Connection, checked: list[tuple[Delivery, Entry | Rejected]], start: Position,
                isolate: bool) -> tuple[list[Rejected], Position, int]:
    """Applies the batch's entries after ``start`` pipelined, or (``isolate``) each in a savepoint, and moves the
    position; returns the rejects, the position reached and how many entries were applied."""
    with contextlib.ExitStack() as stack:
        pipeline = None if isolate else stack.enter_context(conn.pipeline())
        writer = Writer(conn, pipelined=pipeline is not None)
        rejects, reached, applied = _admit(checked, start, lambda entry: _project_one(conn, writer, entry, isolate))
        if reached.stream_seq == start.stream_seq:
            return rejects, reached, applied
        writer.flush()
        _move_position(writer, reached)
        if pipeline is not None:
            pipeline.sync()
            writer.verify()
    return rejects, reached, applied


def _apply_bulk(conn: psycopg.Connection, checked: list[tuple[Delivery, Entry | Rejected]],
                start: Position) -> tuple[list[Rejected], Position, int]:
    """Applies the batch's entries after ``start`` in bulk: the rows its events change read first, the event log
    copied while the events are projected (held in memory, the rest pipelined), the held rows copied after;
    then moves the position. Returns as ``_apply_each``."""
    admitted: list[Entry] = []
    rejects, reached, applied = _admit(checked, start, lambda entry: admitted.append(entry))
    if reached.stream_seq == start.stream_seq:
        return rejects, reached, applied
    writer = Writer(conn, pipelined=True, hold=True)
    _preload(writer, checked)
    with writer.copying_beside(event_log.INSERT, [event_log.row(entry) for entry in admitted]):
        for entry in admitted:
            _project_models(writer, entry)
    with conn.pipeline() as pipeline:
        writer.settle()
        writer.tallies.flush()
        pipeline.sync()
        writer.verify()
    writer.copy_pending()
    _move_position(writer, reached)
    return rejects, reached, applied


def _admit(checked: list[tuple[Delivery, Entry | Rejected]], start: Position,
           apply: Callable[[Entry], str | None]) -> tuple[list[Rejected], Position, int]:
    """Hands ``apply`` each entry after ``start`` in order (it returns why it failed, or None); returns the
    messages rejected (invalid, at or before the position applied so far, or failed), the position reached
    and how many entries were applied. Messages at or before ``start``'s stream sequence are skipped."""
    rejects: list[Rejected] = []
    applied = 0
    position, stream_seq = start
    for delivery, item in checked:
        if delivery.stream_seq <= stream_seq:
            continue
        stream_seq = delivery.stream_seq
        if isinstance(item, Entry) and item.position <= position:
            item = Rejected(delivery, f"position {item.position} is not after the applied position {position}")
        if isinstance(item, Rejected):
            rejects.append(item)
            continue
        failure = apply(item)
        if failure is not None:
            rejects.append(Rejected(delivery, failure))
            continue
        position = item.position
        applied += 1
    return rejects, Position(position, stream_seq), applied


def _preload(writer: Writer, checked: list[tuple[Delivery, Entry | Rejected]]) -> None:
    """Has a bulk batch hold the existing rows its events change (where a read model can hold them);
    each read model is given the batch's events by type."""
    events: dict[type, list[Any]] = {}
    for _, item in checked:
        if isinstance(item, Entry) and item.event is not None:
            events.setdefault(type(item.event), []).append(item.event)
    for model in PRELOADED:
        model.preload(writer, events)


def _project_one(conn: psycopg.Connection, writer: Writer, entry: Entry, isolate: bool) -> str | None:
    """Projects ``entry``; with ``isolate``, in a savepoint, returning why it failed (None: applied)."""
    if not isolate:
        project(writer, entry)
        return None
    try:
        with conn.transaction():
            project(writer, entry)
    except _INFRASTRUCTURE:
        raise
    except Exception as exc:  # noqa: BLE001 - this event cannot be applied: it goes to the dead letters
        return f"cannot apply {entry.type_name} at position {entry.position}: {type(exc).__name__}: {exc}"
    return None


def _move_position(writer: Writer, reached: Position) -> None:
    writer.execute(
        "UPDATE projection_position SET position = %s, stream_seq = %s WHERE projection = %s",
        (reached.position, reached.stream_seq, PROJECTION),
    )
    writer.execute("SELECT pg_notify(%s, %s)", (POSITION_CHANNEL, str(reached.position)))


def _lock_position(conn: psycopg.Connection) -> Position:
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO projection_position (projection, position, stream_seq) VALUES (%s, 0, 0)"
            " ON CONFLICT (projection) DO NOTHING",
            (PROJECTION,),
        )
        cur.execute(
            "SELECT position, stream_seq FROM projection_position WHERE projection = %s FOR UPDATE", (PROJECTION,)
        )
        row = cur.fetchone()
    assert row is not None
    return Position(*row)


def _reject(on_reject: RejectHandler, rejected: Rejected) -> None:
    try:
        on_reject(rejected)
    except Exception as exc:
        raise DeadLetterError(f"cannot dead-letter stream message {rejected.delivery.stream_seq}: {exc}") from exc
