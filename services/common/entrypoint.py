"""Runs one service in the foreground (``python -m services.<name>``) until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Awaitable, Callable

from services.common.gc_tuning import tune_gc
from services.common.health_board import publish_health
from services.common.process_exit import end_leftover_tasks, exit_within
from services.common.settings import Settings

__all__ = ["run_until_signalled"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
HEALTH_GRACE = 3.0
"""Seconds the health publisher has, at the end, to delete its entry."""


def run_until_signalled(
    name: str,
    run: Callable[[Settings, asyncio.Event], Awaitable[None]],
    *,
    needs: tuple[str, ...] = ("nats_url", "pg_dsn"),
    health: bool = True,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> None:
    """Reads ``Settings`` from ``BERTH_*`` variables, checks the ones ``needs`` names, and runs ``run``,
    putting the outages the process waits out in the health bucket meanwhile (``health_board``) unless
    ``health`` is False (agents: their bus identity may write nothing shared; they log their outages).
    ``BERTH_LOG_LEVEL`` (default INFO) sets the log level; ``loop_factory`` makes the event loop
    (default: asyncio's). The garbage collector is set for a long-running process (``gc_tuning``). Once ``run``
    has ended, the process ends within ``process_exit.EXIT_WITHIN`` seconds: what holds it (a task outliving its
    cancellation, a thread in a blocking call) is logged with its stack, and the process ends with status 1."""
    tune_gc()
    logging.basicConfig(level=os.environ.get("BERTH_LOG_LEVEL", "INFO").upper(), format=LOG_FORMAT)
    settings = Settings.from_env()
    missing = [f"BERTH_{field.upper()}" for field in needs if not getattr(settings, field)]
    if missing:
        sys.exit(f"{name}: set {' and '.join(missing)}")

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log = logging.getLogger(name)
        board = asyncio.create_task(publish_health(settings.nats_url, name, stop)) if settings.nats_url and health else None
        try:
            await run(settings, stop)
        finally:
            stop.set()
            if board is not None:
                await asyncio.wait([board], timeout=HEALTH_GRACE)
            exit_within(log)
            await end_leftover_tasks(log)
        log.info("%s stopped", name)

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve())
