"""``python -m services.controller``: runs the controller with settings from ``BERTH_*`` variables."""

from __future__ import annotations

import asyncio
import logging
import signal

from services.common.settings import Settings
from services.controller.main import run_controller


async def _main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_controller(Settings.from_env(), stop)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_main())
