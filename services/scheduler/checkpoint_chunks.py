"""The checkpoint's bytes in the KV bucket, cut into chunks that each fit one NATS message.

A checkpoint grows with the pending sessions (a few hundred bytes each, a few kilobytes for one with
64 kernels and dependencies); in one message it would stop being written past ``max_payload`` (1 MiB
by default), and every start would replay ``EVENTS`` from further back. So its bytes go under
``snapshot.<slot>.<n>``, at most ``MAX_CHUNKS`` of them, and the head (key ``snapshot``: the slot, the
number of chunks, the size and SHA-256 of the whole) is put last: the head is the commit. Two slots
take turns: a write fills the one the current head does not name, so a write that stops halfway
leaves the last checkpoint whole. The reader checks the size and digest of what it put together:
chunks overwritten under a head (two writers at once) make it refuse the checkpoint — the full
replay — never mis-read it. The keys are fixed (not one set per write): the bucket holds at most two
checkpoints, and no trail of deleted keys grows with the platform's age.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import msgspec
from nats.js.errors import KeyDeletedError, KeyNotFoundError
from nats.js.kv import KeyValue

__all__ = ["HEAD_KEY", "MAX_CHUNKS", "ChunkError", "Head", "chunk_key", "read_chunked", "read_head", "write_chunked"]

HEAD_KEY = "snapshot"
MAX_CHUNKS = 64
"""Messages one checkpoint may take: 60 MiB with NATS' default ``max_payload`` (a checkpoint of
10,000 pending sessions is about 250 KiB)."""

Slot = Literal["a", "b"]


class Head(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where the chunks of the current checkpoint are and what they add up to."""

    slot: Slot
    chunks: int
    size: int
    sha256: str


class ChunkError(ValueError):
    """Raised when the checkpoint's head or chunks are missing, not of this layout, or do not add up."""


def chunk_key(slot: Slot, index: int) -> str:
    """Returns the key of one chunk."""
    return f"{HEAD_KEY}.{slot}.{index}"


async def read_head(kv: KeyValue) -> Head | None:
    """Returns the head of the current checkpoint; None when there is none; ``ChunkError`` when the key
    holds something else (a checkpoint in one message, as written before chunks)."""
    value = await _get(kv, HEAD_KEY)
    if value is None:
        return None
    try:
        head = msgspec.msgpack.decode(value, type=Head)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ChunkError(f"its head is not one of chunks ({len(value)} bytes: {exc})") from exc
    if not 0 < head.chunks <= MAX_CHUNKS or head.size < 0:
        raise ChunkError(f"its head names {head.chunks} chunk(s) of {head.size} bytes (at most {MAX_CHUNKS} chunks)")
    return head


async def write_chunked(kv: KeyValue, data: bytes, chunk_bytes: int) -> Head:
    """Puts ``data`` in chunks of at most ``chunk_bytes``, then the head naming them; returns the head.
    Raises ``ChunkError`` (nothing written) when it would take more than ``MAX_CHUNKS`` chunks."""
    chunks = [data[at:at + chunk_bytes] for at in range(0, len(data), chunk_bytes)] or [b""]
    if len(chunks) > MAX_CHUNKS:
        raise ChunkError(f"{len(data)} bytes take {len(chunks)} chunks of {chunk_bytes}, more than {MAX_CHUNKS}")
    try:
        current = await read_head(kv)
    except ChunkError:
        current = None  # not a checkpoint of this layout: either slot will do
    slot: Slot = "b" if current is not None and current.slot == "a" else "a"
    for index, chunk in enumerate(chunks):
        await kv.put(chunk_key(slot, index), chunk)
    head = Head(slot=slot, chunks=len(chunks), size=len(data), sha256=hashlib.sha256(data).hexdigest())
    await kv.put(HEAD_KEY, msgspec.msgpack.encode(head))
    return head


async def read_chunked(kv: KeyValue) -> bytes | None:
    """Returns the bytes of the current checkpoint; None when there is none; ``ChunkError`` when a chunk
    is missing or they are not what the head says (at most ``MAX_CHUNKS`` messages are read)."""
    head = await read_head(kv)
    if head is None:
        return None
    parts: list[bytes] = []
    for index in range(head.chunks):
        chunk = await _get(kv, chunk_key(head.slot, index))
        if chunk is None:
            raise ChunkError(f"its chunk {chunk_key(head.slot, index)} is missing")
        parts.append(chunk)
    data = b"".join(parts)
    if len(data) != head.size or hashlib.sha256(data).hexdigest() != head.sha256:
        raise ChunkError(f"its {head.chunks} chunk(s) in slot {head.slot} are not the ones its head names "
                         f"({len(data)} bytes, not {head.size}, or another digest)")
    return data


async def _get(kv: KeyValue, key: str) -> bytes | None:
    try:
        entry = await kv.get(key)
    except (KeyNotFoundError, KeyDeletedError):
        return None
    return entry.value or b""
