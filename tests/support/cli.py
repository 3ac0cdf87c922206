"""Runs the ``berth`` command as a separate process against a gateway, for integration tests."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

__all__ = ["as_json", "berth"]


async def berth(url: str, keypair: tuple[str, str], *args: str, ok: bool = True) -> tuple[int, str, str]:
    """Runs ``berth *args`` as ``keypair`` against the gateway at ``url`` (no other ``BERTH_*``
    variable); asserts it succeeded (``ok``) or failed; returns its status, stdout and stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    env.update(BERTH_ENDPOINT=url, BERTH_ACCESS_KEY=keypair[0], BERTH_SECRET_KEY=keypair[1])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert (proc.returncode == 0) is ok, (args, out.decode(), err.decode())
    return proc.returncode or 0, out.decode(), err.decode()


async def as_json(url: str, keypair: tuple[str, str], *args: str) -> Any:
    """Returns what ``berth -o json *args`` printed, decoded."""
    return json.loads((await berth(url, keypair, "-o", "json", *args))[1])
