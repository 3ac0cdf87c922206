"""Runs one read-model query and returns its rows as Structs (``fetch_all``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import msgspec
import psycopg
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool

__all__ = ["ReadModelsMissingError", "columns", "fetch_all", "missing"]

R = TypeVar("R", bound=msgspec.Struct)


class ReadModelsMissingError(RuntimeError):
    """Raised when the read-model tables do not exist yet (the projector has not created them)."""

    def __init__(self) -> None:
        super().__init__("read models are not initialised yet: is the projector running?")


def columns(row_type: type[msgspec.Struct], alias: str = "") -> str:
    """Returns the select list of ``row_type``'s fields (``alias.`` before each when given), so a
    new column in ``schema.sql`` never breaks a reader."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + name for name in row_type.__struct_fields__)


def missing(exc: psycopg.errors.UndefinedTable) -> ReadModelsMissingError:
    """Returns the error of a query that met no read-model table."""
    error = ReadModelsMissingError()
    error.__cause__ = exc
    return error


async def fetch_all(
    pool: AsyncConnectionPool, row_type: type[R], query: str, params: Sequence[Any] | Mapping[str, Any] = ()
) -> list[R]:
    """Returns the rows of ``query`` as ``row_type`` (its columns named as the fields)."""
    try:
        async with pool.connection() as conn:
            cur = conn.cursor(row_factory=class_row(row_type))
            await cur.execute(query, params)
            return await cur.fetchall()
    except psycopg.errors.UndefinedTable as exc:
        raise missing(exc) from exc
