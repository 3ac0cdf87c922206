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
batch go with ``COPY`` after the pipeline closes (``Writer.copy_pending``). Not ``durable`` (a
rebuild), the transaction commits with ``synchronous_commit = off``: a crash can lose only the last
batches, rows and position together, which the replay then applies again.
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
    """One attempt: pipelined in one go (its remaining inserts copied when ``bulk``), or
    (``isolate``) one savepoint per event."""
    rejects: list[Rejected] = []
    applied = 0
    with conn.transaction():
        start = _lock_position(conn)
        if not durable:
            conn.execute("SET LOCAL synchronous_commit = off")
        if expected_stream_seq is not None and start.stream_seq != expected_stream_seq:
            raise PositionMovedError(expected_stream_seq, start.stream_seq)
        position, stream_seq = start
        with contextlib.ExitStack() as stack:
            pipeline = None if isolate else stack.enter_context(conn.pipeline())
            writer = Writer(conn, pipelined=pipeline is not None, hold=bulk)
            if bulk and pipeline is not None:
                _preload(writer, checked)
            for delivery, item in checked:
                if delivery.stream_seq <= stream_seq:
                    continue
                stream_seq = delivery.stream_seq
                if isinstance(item, Entry) and item.position <= position:
                    item = Rejected(delivery, f"position {item.position} is not after the applied position {position}")
                if isinstance(item, Rejected):
                    rejects.append(item)
                    continue
                failure = _project_one(conn, writer, item, isolate)
                if failure is not None:
                    rejects.append(Rejected(delivery, failure))
                    continue
                position = item.position
                applied += 1
            if stream_seq == start.stream_seq:
                return BatchResult(position, stream_seq, 0, 0)
            copied = bulk and pipeline is not None
            writer.tallies.flush()
            if not copied:
                writer.flush()
                _move_position(writer, position, stream_seq)
            if pipeline is not None:
                pipeline.sync()
                writer.verify()
        if copied:
            writer.copy_pending()
            _move_position(writer, position, stream_seq)
        for rejected in rejects:
            _reject(on_reject, rejected)
    return BatchResult(position, stream_seq, applied, len(rejects))


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


def _move_position(writer: Writer, position: int, stream_seq: int) -> None:
    writer.execute(
        "UPDATE projection_position SET position = %s, stream_seq = %s WHERE projection = %s",
        (position, stream_seq, PROJECTION),
    )
    writer.execute("SELECT pg_notify(%s, %s)", (POSITION_CHANNEL, str(position)))


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
