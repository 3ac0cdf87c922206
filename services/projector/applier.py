"""The projector's side of PostgreSQL: one blocking psycopg connection, used only on its own
worker thread (``ThreadConnection``), that applies batches through ``projections.runner``."""

from __future__ import annotations

import logging
from typing import Sequence

import psycopg

from projections.delivery import Delivery, Entry, Rejected
from projections.position import Position, read_position
from projections.rebuild import create_secondary_indexes, reset_read_models
from projections.runner import BatchResult, RejectHandler, apply_batch
from projections.schema import create_schema
from services.common.pg_limits import limited_dsn
from services.projector.connection import ThreadConnection

__all__ = ["BatchApplier"]

log = logging.getLogger(__name__)


class BatchApplier:
    """Applies batches to the read models; reconnects (and creates the schema) when needed."""

    def __init__(self, dsn: str) -> None:
        """Prepares the applier; the connection opens on first use (and creates the schema then)."""
        self._dsn = dsn
        self._conn = ThreadConnection(dsn, "projector-db", prepare=create_schema)

    async def position(self) -> Position:
        """Returns the applied position."""
        return await self._conn.call(read_position)

    async def apply(
        self, deliveries: Sequence[Delivery], expected_stream_seq: int, on_reject: RejectHandler, *, bulk: bool = False,
        durable: bool = True, checked: Sequence[Entry | Rejected] | None = None,
    ) -> BatchResult:
        """Applies ``deliveries`` in one transaction (see ``projections.runner.apply_batch`` for ``bulk``
        and ``durable``; ``checked`` when they were checked already)."""
        return await self._conn.call(
            lambda conn: apply_batch(
                conn, deliveries, on_reject=on_reject, expected_stream_seq=expected_stream_seq, bulk=bulk,
                durable=durable, checked=checked,
            )
        )

    async def reset(self, *, bulk: bool = False) -> None:
        """Drops and recreates the read models (position back to zero); with ``bulk`` without
        their secondary indexes, which ``finish_bulk`` puts back."""
        await self._conn.call(lambda conn: reset_read_models(conn, bulk=bulk), prepare=False)  # it creates them

    async def finish_bulk(self) -> None:
        """Creates what a bulk reset left out (the secondary indexes), over this connection and a second
        one at once (``create_secondary_indexes``)."""
        await self._conn.call(self._create_indexes)

    def _create_indexes(self, conn: psycopg.Connection) -> None:
        with psycopg.connect(limited_dsn(self._dsn), autocommit=True) as other:
            create_secondary_indexes(conn, other)

    async def close(self) -> None:
        """Closes the connection and the worker thread."""
        await self._conn.close()
