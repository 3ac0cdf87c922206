"""One blocking psycopg connection of the projector, used only on a worker thread of its own (the applier's,
the upkeep's): opened when a call needs it, prepared then, and dropped after a connection error so that the
next call opens a fresh one."""

from __future__ import annotations

from typing import Any, Callable

import psycopg

from services.application.facade import Facade
from services.common.pg_limits import limited_dsn

__all__ = ["ThreadConnection"]

Work = Callable[[psycopg.Connection], Any]


class ThreadConnection:
    """An autocommit connection to ``dsn`` (with ``pg_limits``' session limits) on one thread named ``name``."""

    def __init__(self, dsn: str, name: str, prepare: Work | None = None) -> None:
        """``prepare`` runs on each new connection (before the call that opened it), unless the call says not
        to; the connection opens on first use."""
        self._dsn = dsn
        self._prepare = prepare
        self._conn: psycopg.Connection | None = None
        self._db = Facade(name)  # one thread: the connection never changes threads

    async def call(self, work: Work, *, prepare: bool = True) -> Any:
        """Returns ``work(connection)``, run on the connection's thread; a new connection is prepared first
        unless ``prepare`` is False. After psycopg's ``OperationalError`` or ``InterfaceError`` (raised) the
        connection is dropped."""
        return await self._db.call(self._call, work, prepare)

    async def close(self) -> None:
        """Closes the connection and lets the thread go."""
        await self._db.call(self._disconnect)
        await self._db.close(wait=True)

    def _call(self, work: Work, prepare: bool) -> Any:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._disconnect()
            conn = psycopg.connect(limited_dsn(self._dsn), autocommit=True)
            try:
                if prepare and self._prepare is not None:
                    self._prepare(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        try:
            return work(self._conn)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            self._disconnect()
            raise

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
