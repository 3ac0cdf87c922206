"""Snapshots of aggregate states, so that a cold load costs the same at any age of the platform.

``StateCache`` keeps states per process; a process that starts (a restart, a new service, a rebuild)
would otherwise replay each long-lived aggregate — an agent, a quota scope, a keypair — from its
first event. A snapshot is the msgspec encoding of a state the cache built from committed events,
written every ``EVERY`` versions; a cold load reads the snapshot and only the events after it.

A snapshot is a cache of the store, never a source of truth: it is only written from states read
from the store, so it can be behind the store, never ahead of it; a snapshot whose state type has
changed shape since it was written (its *fingerprint*, a hash of the type's JSON schema, differs)
or that does not decode is ignored, and the history is read instead.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import typing
from typing import Any, Callable, NamedTuple, Protocol

import msgspec

__all__ = ["EVERY", "MemorySnapshots", "fingerprint", "Snapshot", "SnapshotCodec", "SnapshotStore", "codec_of"]

log = logging.getLogger(__name__)

EVERY = 200
"""Versions between two snapshots of one aggregate (a cold load reads at most this many events)."""


class Snapshot(NamedTuple):
    version: int
    type_name: str
    fingerprint: str
    state: bytes


class SnapshotStore(Protocol):
    def get_snapshot(self, aggregate_id: str, kind: str) -> Snapshot | None: ...

    def put_snapshot(self, aggregate_id: str, kind: str, snapshot: Snapshot) -> None: ...


class MemorySnapshots:
    """Snapshots in a dict: for the in-memory event store of unit tests."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], Snapshot] = {}
        self._lock = threading.Lock()

    def get_snapshot(self, aggregate_id: str, kind: str) -> Snapshot | None:
        with self._lock:
            return self._rows.get((aggregate_id, kind))

    def put_snapshot(self, aggregate_id: str, kind: str, snapshot: Snapshot) -> None:
        with self._lock:
            known = self._rows.get((aggregate_id, kind))
            if known is None or known.version < snapshot.version:
                self._rows[(aggregate_id, kind)] = snapshot


class SnapshotCodec:
    """Encodes and decodes the states an ``evolve`` function builds (one type, or a union of types)."""

    def __init__(self, evolve: Callable[..., Any]) -> None:
        self.kind = f"{evolve.__module__}.{evolve.__qualname__}"
        returned = typing.get_type_hints(evolve)["return"]
        members = typing.get_args(returned) if typing.get_origin(returned) is typing.Union else (returned,)
        self._types: dict[str, tuple[type, str]] = {t.__name__: (t, fingerprint(t)) for t in members}

    def encode(self, state: Any) -> Snapshot | None:
        entry = self._types.get(type(state).__name__)
        if entry is None or entry[0] is not type(state):
            return None
        return Snapshot(state.version, type(state).__name__, entry[1], msgspec.json.encode(state))

    def decode(self, snapshot: Snapshot) -> Any | None:
        """Returns the state of ``snapshot``; None when its type changed since (or it does not decode)."""
        entry = self._types.get(snapshot.type_name)
        if entry is None or entry[1] != snapshot.fingerprint:
            return None
        try:
            return msgspec.json.decode(snapshot.state, type=entry[0])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("ignoring an undecodable %s snapshot: %s", snapshot.type_name, exc)
            return None


@functools.cache
def fingerprint(state_type: type) -> str:
    """Returns a hash of ``state_type``'s JSON schema: it changes whenever its shape (or the shape of
    anything in it) changes."""
    schema = msgspec.json.encode(msgspec.json.schema(state_type), order="sorted")
    return hashlib.sha256(schema).hexdigest()[:16]


@functools.cache
def codec_of(evolve: Callable[..., Any]) -> SnapshotCodec:
    """The codec of ``evolve``'s states (built once per function)."""
    return SnapshotCodec(evolve)
