"""What a stopped ``berth up`` leaves behind: the sessions that have not ended, said at the stop.

Stopping Berth does not end its sessions (as stopping a Backend.AI agent or a kubelet does not end
theirs): with the Docker backend their containers go on, and the next ``berth up`` resumes them;
with the process backend their runners end with Berth, and the next ``berth up`` reports them
vanished; simulated ones just resume. A user who pressed Ctrl-C to free the machine is told so,
with how to end them, rather than finding containers still running in ``docker ps``.
"""

from __future__ import annotations

import asyncio
import logging

from psycopg_pool import AsyncConnectionPool

from projections.queries.sessions import count_live
from services.common.pg_limits import limited_dsn

__all__ = ["READ_TIMEOUT", "describe_left", "live_sessions"]

log = logging.getLogger(__name__)

READ_TIMEOUT = 3.0
"""Seconds the stop waits for the count; a database that does not answer by then is not waited for."""

_FATE = {
    "docker": "{their} {containers} {go} on running, and the next `berth up` resumes {them}",
    "process": "{their} {runners} {end} with Berth, and the next `berth up` ends {them} (vanished)",
}
_RESUMED = "the next `berth up` resumes {them}"
_ONE = {"their": "its", "them": "it", "containers": "container", "runners": "runner", "go": "goes", "end": "ends"}
_MANY = {"their": "their", "them": "them", "containers": "containers", "runners": "runners", "go": "go", "end": "end"}


async def live_sessions(pg_dsn: str, timeout: float = READ_TIMEOUT) -> dict[str, int] | None:
    """Returns how many sessions not ended there are per status (``count_live``), None when the read
    models cannot be read within ``timeout`` seconds (no database, no tables yet)."""
    pool = AsyncConnectionPool(limited_dsn(pg_dsn), min_size=1, max_size=1, open=False, name="berth-up-stop",
                               kwargs={"autocommit": True}, timeout=timeout)
    try:
        async with asyncio.timeout(timeout):
            await pool.open(wait=True, timeout=timeout)
            return await count_live(pool)
    except Exception as exc:  # noqa: BLE001 - only a note at the stop: nothing to say then
        log.debug("cannot count the sessions left: %s: %s", type(exc).__name__, exc)
        return None
    finally:
        await pool.close(timeout=1.0)


def describe_left(counts: dict[str, int] | None, backend: str) -> str | None:
    """Returns the line that says which sessions a stop leaves and what becomes of them with ``backend``
    (None when none is left), e.g. ``2 sessions not ended (1 PENDING, 1 RUNNING): their containers go on
    running, and the next `berth up` resumes them; to end them, `berth rm` before stopping``."""
    if not counts or not sum(counts.values()):
        return None
    total = sum(counts.values())
    statuses = ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    words = _ONE if total == 1 else _MANY
    fate = _FATE.get(backend, _RESUMED).format(**words)
    noun = "session" if total == 1 else "sessions"
    return f"{total} {noun} not ended ({statuses}): {fate}; to end {words['them']}, `berth rm` before stopping"
