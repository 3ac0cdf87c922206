"""The event store's PostgreSQL side: one statement per save, bounded sessions, a stall watch.

Why not the library's default insert path: ``eventsourcing``'s ``PostgresApplicationRecorder``
sends ``LOCK TABLE``, ``NOTIFY`` and the ``INSERT`` of a save in psycopg's *pipeline mode*. With
a large save (a scheduling pass of a few thousand events, about 5 MB and more) the client ends up
in ``Pipeline.sync → Connection.wait`` while the server sits in ``ClientRead`` inside the
``INSERT``, waiting for the rest of a message that is never sent (the shape of psycopg issue
#685) — holding the event table's ``EXCLUSIVE`` lock, so every other writer waits behind it
forever. ``tests/integration/test_store_wedge.py`` reproduces it with the library's recorder.

``BerthRecorder`` saves with ONE call of a PL/pgSQL function (``berth_insert_events_text``): it
takes the same table lock (so notification ids are issued in commit order, which the relay
relies on), notifies, inserts and returns the ids, in one round trip and one implicit
transaction. No pipeline, and half the round trips of the library's path. The events go as four
arrays (ids, versions, topics, states) in binary, not as the library's array of a composite type:
psycopg dumps a composite value by value in Python, and the server parses its text, where an array
of text or bytea is copied in C both sides (a save of 19 events: 589 -> 117 us of client CPU,
992 -> 385 us; of 200: 5.5 -> 0.35 ms, 8.0 -> 1.4 ms).

Its own reads and the snapshot upsert (``select_last``, ``select_newer``, ``get_snapshot``, ``put_snapshot``)
are tried again on a fresh connection after a connection error, as the library's methods are: after
PostgreSQL dropped the pool's connections (a restart, a network cut) each of them fails once, and
without the retry each would fail one request.

Defence in depth: every connection of the store carries ``pg_limits.SESSION_LIMITS``
(statement, lock and idle-in-transaction timeouts), and a save that does not return within
``STALL_SECONDS`` is logged as an error and its connection shut down, so the library's retry
runs it again on a fresh connection instead of waiting forever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from typing import Any, Iterator, Mapping, Sequence

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore, PostgresFactory
from eventsourcing.utils import retry
from psycopg.sql import SQL, Identifier

from services.common.pg_limits import session_options
from services.common.snapshots import Snapshot

__all__ = ["STALL_SECONDS", "BerthPostgresFactory", "BerthRecorder", "StallWatch"]

log = logging.getLogger(__name__)

STALL_SECONDS = 30.0
"""A save that has not returned after this long is stalled (the statement timeout is shorter)."""

_on_a_fresh_connection = retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
"""Tries a call again after a connection error, up to 10 times 0.2 s apart, as the library's recorder
methods are: the pool hands out the next connection, so dropped ones are passed over one by one."""


class StallWatch:
    """Watches calls that use a connection; shuts down the socket of one that overruns its deadline.

    Shutting the socket (not closing the descriptor, which psycopg still owns) wakes the
    blocked thread with an ``OperationalError`` and makes the server abort the transaction and
    release its locks.
    """

    def __init__(self, deadline: float = STALL_SECONDS, interval: float = 1.0) -> None:
        self.deadline = deadline
        self.interval = interval
        self.stalls = 0
        self._calls: dict[int, tuple[float, int, str]] = {}
        self._lock = threading.Lock()
        self._next = 0
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watching(self, fileno: int, what: str) -> Iterator[None]:
        """Runs the body with the socket ``fileno`` under watch."""
        with self._lock:
            self._next += 1
            token = self._next
            self._calls[token] = (time.monotonic() + self.deadline, fileno, what)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="store-stall-watch", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._calls.pop(token, None)

    def _watch(self) -> None:
        while True:
            time.sleep(self.interval)
            now = time.monotonic()
            with self._lock:
                overdue = [(t, c) for t, c in self._calls.items() if c[0] <= now]
                for token, _ in overdue:
                    del self._calls[token]
            for _, (_, fileno, what) in overdue:
                self.stalls += 1
                log.error(
                    "STALLED: %s has not returned after %.0f s; shutting its PostgreSQL connection down"
                    " so it is retried on a fresh one", what, self.deadline)
                _shutdown(fileno)


def _shutdown(fileno: int) -> None:
    try:
        dup = os.dup(fileno)
    except OSError:
        return
    sock = socket.socket(fileno=dup)
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


class BerthRecorder(PostgresApplicationRecorder):
    """The application recorder with a one-statement save (see the module docstring)."""

    stall_watch = StallWatch()

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        schema = Identifier(self.datastore.schema)
        id_type = SQL(self.datastore.originator_id_type)
        function = Identifier(f"berth_insert_events_{self.datastore.originator_id_type}")
        self.sql_create_statements.append(
            SQL(
                "CREATE OR REPLACE FUNCTION {schema}.{function}("
                "ids {id_type}[], versions bigint[], topics text[], states bytea[]) "
                "RETURNS SETOF bigint LANGUAGE plpgsql AS $BODY$ "
                "BEGIN "
                "  SET LOCAL lock_timeout = '{lock_timeout}s'; "
                "  LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE; "
                "  NOTIFY {channel}; "
                "  RETURN QUERY INSERT INTO {schema}.{table}"
                "    (originator_id, originator_version, topic, state)"
                "    SELECT * FROM unnest(ids, versions, topics, states)"
                "    RETURNING notification_id; "
                "END; $BODY$"
            ).format(
                schema=schema,
                function=function,
                id_type=id_type,
                table=Identifier(self.events_table_name),
                channel=Identifier(self.channel_name),
                lock_timeout=int(self.datastore.lock_timeout or 5),
            )
        )
        self._insert_call = SQL(
            "SELECT {schema}.{function}(%b::{id_type}[], %b::bigint[], %b::text[], %b::bytea[]) AS id"
        ).format(schema=schema, function=function, id_type=id_type)
        snapshots = Identifier(f"{self.events_table_name}_snapshots")
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{snapshots} ("
                " aggregate_id text NOT NULL, kind text NOT NULL, version bigint NOT NULL,"
                " type_name text NOT NULL, fingerprint text NOT NULL, state bytea NOT NULL,"
                " PRIMARY KEY (aggregate_id, kind))"
            ).format(schema=schema, snapshots=snapshots)
        )
        self._get_snapshot = SQL(
            "SELECT version, type_name, fingerprint, state FROM {schema}.{snapshots}"
            " WHERE aggregate_id = %s AND kind = %s"
        ).format(schema=schema, snapshots=snapshots)
        self._put_snapshot = SQL(
            "INSERT INTO {schema}.{snapshots} AS s (aggregate_id, kind, version, type_name, fingerprint, state)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (aggregate_id, kind) DO UPDATE SET"
            " version = EXCLUDED.version, type_name = EXCLUDED.type_name, fingerprint = EXCLUDED.fingerprint,"
            " state = EXCLUDED.state WHERE s.version < EXCLUDED.version"
        ).format(schema=schema, snapshots=snapshots)
        # One index range per aggregate, whatever the plan: OFFSET 0 keeps the lateral subquery from
        # being flattened into a join. As a plain join, the generic plan a prepared statement gets after
        # five runs hash-joined a sequential scan of the whole table (38 ms at 42,000 events, growing with
        # the platform's age; 0.2 ms so): the gateway's every tenancy read ran it.
        self._select_newer = SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state"
            " FROM unnest(%s::text[], %s::bigint[]) AS k(id, v)"
            " CROSS JOIN LATERAL (SELECT * FROM {schema}.{table}"
            " WHERE originator_id = k.id AND originator_version > k.v OFFSET 0) AS e ORDER BY e.notification_id"
        ).format(schema=schema, table=Identifier(self.events_table_name))

        self._select_last = SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state FROM unnest(%s::text[]) AS k(id)"
            " CROSS JOIN LATERAL (SELECT * FROM {schema}.{table} WHERE originator_id = k.id"
            " ORDER BY originator_version DESC LIMIT 1) AS e"
        ).format(schema=schema, table=Identifier(self.events_table_name))

    @_on_a_fresh_connection
    def select_last(self, aggregate_ids: Sequence[str]) -> list[StoredEvent]:
        """Returns the latest stored event of each of ``aggregate_ids`` that has any, with ONE
        statement (an indexed read per id)."""
        if not aggregate_ids:
            return []
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_last, (list(aggregate_ids),))
            return [
                StoredEvent(originator_id=r["originator_id"], originator_version=r["originator_version"],
                            topic=r["topic"], state=bytes(r["state"]))
                for r in curs.fetchall()
            ]

    @_on_a_fresh_connection
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        if not stored_events:
            return []
        columns = (
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
        )
        with self.datastore.get_connection() as conn:
            with self.stall_watch.watching(conn.pgconn.socket, f"saving {len(stored_events)} event(s)"):
                with conn.cursor() as curs:
                    curs.execute(self._insert_call, columns)
                    return [row["id"] for row in curs.fetchall()]


    @_on_a_fresh_connection
    def select_newer(self, known: Mapping[str, int]) -> list[StoredEvent]:
        """Returns the stored events after version ``known[id]`` of each aggregate, in notification
        order, with one indexed read."""
        if not known:
            return []
        ids, versions = list(known), list(known.values())
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_newer, (ids, versions))
            return [
                StoredEvent(originator_id=r["originator_id"], originator_version=r["originator_version"],
                            topic=r["topic"], state=bytes(r["state"]))
                for r in curs.fetchall()
            ]


    @_on_a_fresh_connection
    def get_snapshot(self, aggregate_id: str, kind: str) -> Snapshot | None:
        """Returns the latest snapshot of one aggregate's state of ``kind`` (one indexed read)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._get_snapshot, (aggregate_id, kind))
            row = curs.fetchone()
        if row is None:
            return None
        return Snapshot(int(row["version"]), row["type_name"], row["fingerprint"], bytes(row["state"]))

    @_on_a_fresh_connection
    def put_snapshot(self, aggregate_id: str, kind: str, snapshot: Snapshot) -> None:
        """Stores ``snapshot`` unless a newer one of the same aggregate and kind is stored."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._put_snapshot, (aggregate_id, kind, snapshot.version, snapshot.type_name,
                                              snapshot.fingerprint, snapshot.state))


class BerthPostgresFactory(PostgresFactory):
    """``eventsourcing``'s PostgreSQL factory with ``BerthRecorder`` and ``SESSION_LIMITS``."""

    application_recorder_class = BerthRecorder

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        kwargs = self.datastore.pool.kwargs
        assert isinstance(kwargs, dict)
        kwargs["options"] = session_options()
