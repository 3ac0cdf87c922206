"""``SweepingCheck``: a connection back in the pool for less than ``CHECK_AFTER_IDLE`` is handed out
unchecked (no round trip under load); one idle longer, or new, is checked, and a broken one has the
pool check all its idle connections."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from services.gateway import pool_check
from services.gateway.pool_check import SweepingCheck


class Conn:
    """Stands for a connection: ``check_connection`` runs its ``execute``."""

    def __init__(self, broken: bool = False) -> None:
        self.broken = broken
        self.checks = 0
        self.autocommit = True

    async def execute(self, query: str) -> None:
        self.checks += 1
        if self.broken:
            raise psycopg.OperationalError("the connection is lost")


class Pool:
    def __init__(self) -> None:
        self.sweeps = 0

    async def check(self) -> None:
        self.sweeps += 1


async def test_a_connection_returned_a_moment_ago_is_not_checked_one_idle_longer_is() -> None:
    now = [100.0]
    check = SweepingCheck(clock=lambda: now[0])
    conn: Any = Conn()
    await check(conn)  # new: checked
    await check.returned(conn)
    now[0] += pool_check.CHECK_AFTER_IDLE / 2
    await check(conn)
    assert conn.checks == 1
    now[0] += pool_check.CHECK_AFTER_IDLE
    await check(conn)
    assert conn.checks == 2


async def test_a_broken_connection_has_the_pool_check_its_idle_ones_once() -> None:
    check = SweepingCheck()
    pool = Pool()
    check.pool = pool  # type: ignore[assignment]
    for _ in range(3):
        with pytest.raises(psycopg.OperationalError):
            await check(Conn(broken=True))  # type: ignore[arg-type]
    assert check._sweep is not None  # noqa: SLF001 - the sweep under way
    await check._sweep  # noqa: SLF001
    assert pool.sweeps == 1  # three broken ones found while it ran: one sweep
