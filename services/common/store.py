"""The event store: ``eventsourcing`` on PostgreSQL (psycopg 3) with a msgspec mapper.

The bytes stored are the canonical msgspec JSON that the relay publishes, and the
topic is the stable type name. All bounded contexts share one notification log
(table ``berth_events``) so one save can span several aggregates atomically.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, Mapper, Recording, StoredEvent, Transcoder
import psycopg
from psycopg.conninfo import conninfo_to_dict

from contracts.catalog import decode_event, encode_event
from contracts.envelope import Event
from contracts.travel import check_travel
from services.common.snapshots import MemorySnapshots
from services.common.state_cache import StateCache

__all__ = ["BerthApplication", "ConcurrencyError", "MsgspecMapper", "eventsourcing_env", "retry_on_conflict"]

log = logging.getLogger(__name__)
T = TypeVar("T")
S = TypeVar("S")

_SCHEMA_LOCK = 0x6265727468  # "berth": the advisory lock held while an application creates its tables


class ConcurrencyError(Exception):
    """Raised when an aggregate changed since it was loaded (optimistic concurrency)."""


class _Unused(Transcoder):
    def encode(self, obj: Any) -> bytes:  # pragma: no cover - never called
        raise NotImplementedError

    def decode(self, data: bytes) -> Any:  # pragma: no cover - never called
        raise NotImplementedError


class MsgspecMapper(Mapper[str]):
    """Maps events to stored events and back with the contracts' msgspec codec."""

    def __init__(self) -> None:
        super().__init__(transcoder=_Unused())

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        """Encodes one event, refusing (``TravelError``) what could not be published: the guard runs
        here, on the very bytes stored, before the store writes any event of the save."""
        state = encode_event(domain_event)
        check_travel(domain_event, state)
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=type(domain_event).type_name(),
            state=state,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        return decode_event(stored_event.state)


def eventsourcing_env(dsn: str | None, *, pool_size: int = 3) -> dict[str, str]:
    """Returns the ``eventsourcing`` settings for a PostgreSQL DSN, or in-memory ones for None."""
    if not dsn:
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    info = conninfo_to_dict(dsn)
    return {
        "PERSISTENCE_MODULE": "services.common.pg_recorder:BerthPostgresFactory",
        "POSTGRES_DBNAME": str(info.get("dbname") or "postgres"),
        "POSTGRES_HOST": str(info.get("host") or "127.0.0.1"),
        "POSTGRES_PORT": str(info.get("port") or "5432"),
        "POSTGRES_USER": str(info.get("user") or "postgres"),
        "POSTGRES_PASSWORD": str(info.get("password") or ""),
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(pool_size * 2),
        "ORIGINATOR_ID_TYPE": "text",
        "POSTGRES_LOCK_TIMEOUT": "5",
    }


class BerthApplication(Application[str]):
    """Base of the use-case applications; every context shares the ``berth_events`` log."""

    name = "Berth"
    long_lived: frozenset[Callable[..., Any]] = frozenset()
    """The ``evolve`` functions of aggregates whose histories grow with the platform's age (agents,
    quota scopes, keypairs): their states are snapshotted (``services.common.snapshots``)."""

    def __init__(self, dsn: str | None) -> None:
        if not dsn:
            super().__init__(env=eventsourcing_env(dsn))
            self._states = StateCache(self._read_after, snapshots=MemorySnapshots())
            return
        # Creating the tables and functions is not safe to run concurrently ("tuple concurrently
        # updated" from CREATE OR REPLACE FUNCTION, duplicate pg_type from CREATE TABLE IF NOT
        # EXISTS) when several services start at once: serialise it with an advisory lock.
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
            try:
                super().__init__(env=eventsourcing_env(dsn))
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))
        self._states = StateCache(self._read_after, snapshots=self.recorder)  # type: ignore[arg-type]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = "Berth"

    def construct_mapper(self) -> Mapper[str]:
        return MsgspecMapper()

    def load(self, aggregate_id: str) -> list[Event]:
        """Returns the history of one aggregate, oldest first (audits and tests; use cases read
        ``current``, whose cost does not grow with the history)."""
        return list(self.events.get(aggregate_id))  # type: ignore[arg-type]

    def last_event(self, aggregate_id: str) -> Event | None:
        """Returns the latest event of one aggregate (None when it has none), in one indexed read."""
        stored = self.recorder.select_events(aggregate_id, desc=True, limit=1)
        return self.mapper.to_domain_event(stored[0]) if stored else None  # type: ignore[no-any-return]

    def last_events(self, aggregate_ids: Sequence[str]) -> dict[str, Event | None]:
        """``last_event`` of several aggregates, in one read where the recorder has ``select_last``."""
        select = getattr(self.recorder, "select_last", None)
        if select is None:
            return {i: self.last_event(i) for i in aggregate_ids}
        found: dict[str, Event | None] = dict.fromkeys(aggregate_ids)
        for stored in select(list(dict.fromkeys(aggregate_ids))):
            found[stored.originator_id] = self.mapper.to_domain_event(stored)
        return found

    def current(self, aggregate_id: str, evolve: Callable[[S | None, Event], S]) -> S | None:
        """Returns the current state of one aggregate, built by ``evolve`` and cached (see
        ``services.common.state_cache``): only the events since the cached version are read, and
        the states of ``long_lived`` aggregates start from their latest snapshot."""
        return self._states.current(aggregate_id, evolve, snapshot=evolve in self.long_lived)

    def peek(self, aggregate_id: str, evolve: Callable[[S | None, Event], S]) -> S | None:
        """The cached state of one aggregate, possibly behind the store; reads nothing."""
        return self._states.peek(aggregate_id, evolve)

    def current_many(self, aggregate_ids: Iterable[str], evolve: Callable[[S | None, Event], S]) -> dict[str, S | None]:
        """``current`` of several aggregates: one indexed read catches up all those cached."""
        return self._states.current_many(aggregate_ids, evolve, self.newer_than, snapshot=evolve in self.long_lived)

    def _read_after(self, aggregate_id: str, version: int) -> list[Event]:
        return list(self.events.get(aggregate_id, gt=version or None))  # type: ignore[arg-type]

    def record(self, events: Sequence[Event]) -> int | None:
        """Saves ``events`` atomically; returns the last notification id (the position), None if nothing to save.

        Raises ``ConcurrencyError`` when any aggregate moved on since it was loaded, and
        ``TravelError`` (recording nothing) when an event could not be published on the bus.
        """
        if not events:
            return None
        return max(r.notification.id for r in self._save_events(events))

    def record_groups(self, groups: Sequence[Sequence[Event]]) -> list[int | None]:
        """Saves the events of every group in ONE transaction (group commit); returns each group's
        position (its last notification id; None for an empty group). All or nothing, as ``record``."""
        events = [event for group in groups for event in group]
        if not events:
            return [None] * len(groups)
        recordings = self._save_events(events)
        ids = {(r.domain_event.originator_id, r.domain_event.originator_version): r.notification.id for r in recordings}
        return [max((ids[(e.originator_id, e.originator_version)] for e in group), default=None) for group in groups]

    def _save_events(self, events: Sequence[Event]) -> list[Recording[str]]:
        """``Application.save`` of events (never aggregates): the same record and notifications, without
        ``ProcessingEvent.collect_events``, whose ``isinstance`` against a runtime-checkable ``Protocol`` cost
        about 14 µs per event (7 % of the controller's CPU under ``bench_api.py``); raises ``ConcurrencyError``."""
        processing_event: ProcessingEvent[str] = ProcessingEvent()
        processing_event.events.extend(events)  # type: ignore[arg-type]
        try:
            recordings = self._record(processing_event)
        except IntegrityError as exc:
            raise ConcurrencyError(str(exc)) from exc
        self._notify(recordings)
        self.notify(processing_event.events)  # type: ignore[arg-type]  # what save calls (deprecated hook)
        return recordings

    def position(self) -> int:
        """Returns the last notification id in the log (0 when empty)."""
        return self.recorder.max_notification_id() or 0

    def newer_than(self, known: Mapping[str, int]) -> list[Event]:
        """Returns the events after version ``known[id]`` of each aggregate, in store order: what a
        stale view missed, at a cost that depends on what it missed, not on the histories' length."""
        select = getattr(self.recorder, "select_newer", None)
        if select is not None:
            return [self.mapper.to_domain_event(stored) for stored in select(known)]
        return self._scan_newer(known)

    def _scan_newer(self, known: Mapping[str, int], page: int = 1000) -> list[Event]:
        """``newer_than`` for recorders without ``select_newer`` (the in-memory one of unit tests): a
        walk of the notification log, which keeps store order."""
        events: list[Event] = []
        start = 1
        while notifications := self.recorder.select_notifications(start=start, limit=page):
            for notification in notifications:
                version = known.get(notification.originator_id)  # type: ignore[call-overload]
                if version is not None and notification.originator_version > version:
                    events.append(self.mapper.to_domain_event(notification))
            start = notifications[-1].id + 1
        return events


def retry_on_conflict(attempt: Callable[[], T], *, attempts: int = 8) -> T:
    """Returns ``attempt()``, re-running it (it reloads and re-decides) after a ``ConcurrencyError``."""
    for remaining in range(attempts - 1, -1, -1):
        try:
            return attempt()
        except ConcurrencyError:
            if remaining == 0:
                raise
            log.debug("concurrency conflict; retrying (%d left)", remaining)
    raise AssertionError("unreachable")
