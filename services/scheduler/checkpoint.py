"""A checkpoint of the scheduler's snapshot, so that a start follows only the tail of ``EVENTS``.

The snapshot is encoded (msgspec msgpack, zlib) with the stream sequence it reflects (the last
message its follow handled) and put in the NATS key-value bucket ``scheduler_checkpoint``, in chunks
that each fit a message (``checkpoint_chunks``), beside the stream whose sequence it names (a lost or
recreated stream and its checkpoint go together; the stream's creation time is checked anyway), and
writable by the scheduler's bus identity alone (``services.common.bus_identities``). A start loads it
and follows from its sequence + 1. No checkpoint, one of another schema (``SCHEMA``: a fingerprint of
the state's shape) or layout, one that does not decode or whose chunks do not add up, or one whose
sequence the stream no longer holds: the full replay, with a log line.

``Checkpointer`` writes it on its own task every ``EVERY_SECONDS`` (when the follow moved) or
``EVERY_EVENTS`` events, and at stop: the copy (``Snapshot.export``) is one synchronous step on the
event loop between two events (≈3 ms with 10,000 pending sessions), the encoding and compression
(≈45 ms then) run in a thread, the put is awaited off the passes' path. A write that fails (NATS
away, or a checkpoint over ``MAX_CHUNKS`` messages) is logged once with its size and what it costs,
not at every turn, and tried again at the next turn; the first one written after is logged too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import zlib
from typing import Callable

import msgspec
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StreamInfo
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from contracts.subjects import EVENTS_STREAM, SCHEDULER_CHECKPOINT_BUCKET
from services.common.bus import stream_replicas
from services.common.snapshots import fingerprint
from services.common.waiting import first_of
from services.scheduler.checkpoint_chunks import HEAD_KEY, MAX_CHUNKS, ChunkError, read_chunked, write_chunked
from services.scheduler.snapshot import SNAPSHOT_EVENTS, Snapshot
from services.scheduler.snapshot_state import SnapshotState

__all__ = ["Checkpoint", "Checkpointer", "SCHEMA", "checkpoint_bucket", "decode_checkpoint", "encode_checkpoint",
           "load_checkpoint"]

log = logging.getLogger(__name__)

KEY = HEAD_KEY
EVERY_SECONDS = 30.0
EVERY_EVENTS = 10_000
CHECK_EVERY = 1.0
"""Seconds between two looks at the follow's position."""
MAX_DECODED = 1 << 30
"""Bytes a checkpoint may inflate to (a corrupt one never takes more memory)."""
SCHEMA = hashlib.sha256(f"{fingerprint(SnapshotState)}:{','.join(e.type_name() for e in SNAPSHOT_EVENTS)}"
                        .encode()).hexdigest()[:16]
"""Changes whenever the shape of the state (or of anything in it) changes, or the events it is made of: a
checkpoint of another shape, or of a snapshot that skipped events this one applies, is not decoded, the
snapshot is replayed instead."""


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    schema: str
    stream_seq: int
    """The last ``EVENTS`` sequence the state reflects."""
    stream_created: dt.datetime | None
    """When ``EVENTS`` was created (a stream deleted and created again is another stream)."""
    state: SnapshotState


class _Head(msgspec.Struct, kw_only=True):
    schema: str


class CheckpointError(ValueError):
    """Raised when a checkpoint cannot be decoded."""


def encode_checkpoint(state: SnapshotState, stream_seq: int, stream_created: dt.datetime | None) -> bytes:
    """Returns the checkpoint of a snapshot's ``export()``, compressed (``decode_checkpoint`` reads it)."""
    raw = msgspec.msgpack.encode(Checkpoint(schema=SCHEMA, stream_seq=stream_seq, stream_created=stream_created,
                                            state=state))
    return zlib.compress(raw, 1)


def decode_checkpoint(data: bytes) -> Checkpoint:
    """Returns the checkpoint in ``data`` (compressed); raises ``CheckpointError`` when it is not one
    of this version's."""
    try:
        inflate = zlib.decompressobj()
        raw = inflate.decompress(data, MAX_DECODED)
        if inflate.unconsumed_tail or not inflate.eof:
            raise CheckpointError("truncated, or larger than it may be")
        head = msgspec.msgpack.decode(raw, type=_Head)
        if head.schema != SCHEMA:
            raise CheckpointError(f"of schema {head.schema!r}, not {SCHEMA!r}")
        return msgspec.msgpack.decode(raw, type=Checkpoint)
    except (zlib.error, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CheckpointError(str(exc)) from exc


async def checkpoint_bucket(js: JetStreamContext) -> KeyValue:
    """Returns the checkpoint bucket, creating it when missing."""
    try:
        return await js.key_value(SCHEDULER_CHECKPOINT_BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(KeyValueConfig(bucket=SCHEDULER_CHECKPOINT_BUCKET, history=1,
                                                        replicas=stream_replicas()))


async def load_checkpoint(kv: KeyValue, stream: StreamInfo) -> Checkpoint | None:
    """Returns the checkpoint a start can follow the tail of ``stream`` (``EVENTS``) after; None
    (logged) when there is none it can trust."""
    try:
        data = await read_chunked(kv)
        if data is None:
            log.info("no scheduler checkpoint: replaying %s from its start", EVENTS_STREAM)
            return None
        checkpoint = decode_checkpoint(data)
    except (ChunkError, CheckpointError) as exc:
        log.warning("ignoring the scheduler checkpoint, replaying %s from its start: %s", EVENTS_STREAM, exc)
        return None
    first, last = stream.state.first_seq, stream.state.last_seq
    why = None
    if checkpoint.stream_created != stream.created:
        why = f"it was taken of a stream created at {checkpoint.stream_created}, not {stream.created}"
    elif checkpoint.stream_seq > last:
        why = f"its sequence {checkpoint.stream_seq} is past the stream's last ({last})"
    elif checkpoint.stream_seq + 1 < first:
        why = f"the stream no longer holds the events after its sequence {checkpoint.stream_seq} (first: {first})"
    if why is not None:
        log.warning("ignoring the scheduler checkpoint, replaying %s from its start: %s", EVENTS_STREAM, why)
        return None
    log.info("scheduler checkpoint at %s sequence %d: following the %d event(s) after it", EVENTS_STREAM,
             checkpoint.stream_seq, last - checkpoint.stream_seq)
    return checkpoint


class Checkpointer:
    """Writes the snapshot's checkpoint now and then, on its own task (``run``)."""

    def __init__(self, kv: KeyValue, snapshot: Snapshot, position: Callable[[], int],
                 stream: tuple[int, dt.datetime | None], chunk_bytes: int) -> None:
        """``stream``: the sequence of the checkpoint the snapshot started from (0: none) and when
        ``EVENTS`` was created; ``chunk_bytes``: the most one message of it may carry."""
        self._kv = kv
        self._snapshot = snapshot
        self._position = position
        self.written, self._created = stream
        """The sequence of the last checkpoint written (or loaded)."""
        self._chunk_bytes = chunk_bytes
        self.max_bytes = chunk_bytes * MAX_CHUNKS
        """The largest checkpoint it writes (compressed)."""
        self._failing: str | None = None
        """Why the last write failed (None: it did not): a failure is logged as a warning once, not at every turn."""
        self.every_seconds = EVERY_SECONDS
        self.every_events = EVERY_EVENTS

    async def run(self, stop: asyncio.Event) -> None:
        """Writes a checkpoint when due until ``stop`` is set, then a last one."""
        loop = asyncio.get_running_loop()
        since = loop.time()
        while not stop.is_set():
            await first_of(stop, timeout=CHECK_EVERY)
            moved = self._position() - self.written
            if moved > 0 and (moved >= self.every_events or loop.time() - since >= self.every_seconds):
                await self.write()
                since = loop.time()
        if self._position() > self.written:
            await self.write()

    async def write(self) -> bool:
        """Writes a checkpoint of the snapshot as it is now; False (logged) when it could not."""
        seq = self._position()
        try:
            state = self._snapshot.export()  # a consistent copy, between two events (immutable values inside)
            data = await asyncio.to_thread(encode_checkpoint, state, seq, self._created)
        except Exception:  # noqa: BLE001 - a bug here must not stop the scheduler: it replays at the next start
            log.exception("could not encode the scheduler checkpoint at sequence %d", seq)
            return False
        if len(data) > self.max_bytes:
            self._failed("too large", "scheduler checkpoint at sequence %d not written: %d bytes compressed (%d "
                         "pending sessions), above the %d it may have (%d messages of %d bytes); until one is "
                         "written, a start replays %s after sequence %d", seq, len(data), len(state.pending),
                         self.max_bytes, MAX_CHUNKS, self._chunk_bytes, EVENTS_STREAM, self.written)
            return False
        try:
            head = await write_chunked(self._kv, data, self._chunk_bytes)
        except Exception as exc:  # noqa: BLE001 - NATS away: the next turn writes a newer one
            self._failed("not put", "could not write the scheduler checkpoint at sequence %d (%d bytes compressed): "
                         "%s; until one is written, a start replays %s after sequence %d", seq, len(data), exc,
                         EVENTS_STREAM, self.written)
            return False
        if self._failing is not None:
            log.info("scheduler checkpoint written again at %s sequence %d (%d bytes)", EVENTS_STREAM, seq, len(data))
            self._failing = None
        self.written = seq
        log.debug("scheduler checkpoint at %s sequence %d (%d bytes in %d message(s))", EVENTS_STREAM, seq, len(data),
                  head.chunks)
        return True

    def _failed(self, why: str, message: str, *args: object) -> None:
        """Logs a failed write: a warning the first time it fails for this reason, then at debug level."""
        log.log(logging.DEBUG if self._failing == why else logging.WARNING, message, *args)
        self._failing = why
