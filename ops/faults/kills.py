"""SIGKILLs the service processes of a `berth up` while a load runs, waiting for each to be restarted.

`berth up` runs each service as a child ``python -m services.<name>`` (services/supervisor/processes.py)
and starts again one that exits; the children are found in /proc by their parent and command line.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

__all__ = ["Kill", "KillPlan", "kill_services", "service_pids"]

PROC = Path("/proc")
RESTART_TIMEOUT = 60.0  # seconds for berth up to start a killed service again
POLL = 0.1


def _parent(pid: str) -> int | None:
    try:
        stat = (PROC / pid / "stat").read_text()
    except OSError:
        return None
    # the command name, in parentheses, may hold spaces: the fields after its closing one are fixed
    return int(stat[stat.rindex(")") + 2:].split()[1])


def _module(pid: str) -> str | None:
    try:
        argv = (PROC / pid / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    for flag, value in zip(argv, argv[1:]):
        if flag == b"-m" and value.startswith(b"services."):
            return value.decode()[len("services."):]
    return None


def service_pids(parent: int) -> dict[str, int]:
    """Returns ``{service: pid}`` for the children of ``parent`` that run ``python -m services.<service>``."""
    found: dict[str, int] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and _parent(entry.name) == parent:
            module = _module(entry.name)
            if module is not None:
                found[module] = int(entry.name)
    return found


@dataclass
class Kill:
    service: str
    pid: int
    at: float  # seconds from the start of the plan
    restarted_after: float | None = None  # seconds until a new process of that service ran


@dataclass
class KillPlan:
    """Kills each of ``services`` ``times`` times, in a random order, ``gap`` seconds apart (a random
    fraction of it added), from ``delay`` seconds after the start."""

    services: list[str]
    times: int = 2
    delay: float = 2.0
    gap: float = 3.0
    seed: int = 13
    kills: list[Kill] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


async def _restarted(parent: int, service: str, old: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        pid = service_pids(parent).get(service)
        if pid is not None and pid != old:
            return True
        await asyncio.sleep(POLL)
    return False


async def _running(parent: int, service: str, deadline: float) -> int | None:
    while time.monotonic() < deadline:
        pid = service_pids(parent).get(service)
        if pid is not None:
            return pid
        await asyncio.sleep(POLL)
    return None


async def kill_services(parent: int, plan: KillPlan, stop: asyncio.Event,
                        say: Callable[[str], None] = lambda line: None) -> KillPlan:
    """Carries out ``plan`` against the children of the `berth up` process ``parent`` until done or
    ``stop`` is set; each kill waits (at most RESTART_TIMEOUT s) for the service to run again. The
    moments are random (seeded), not synchronised with the load: that is the point."""
    rng = random.Random(plan.seed)
    order = [service for service in plan.services for _ in range(plan.times)]
    rng.shuffle(order)
    started = time.monotonic()
    wait = plan.delay
    for service in order:
        try:
            async with asyncio.timeout(wait):
                await stop.wait()
            return plan  # the load ended first
        except asyncio.TimeoutError:
            pass
        pid = await _running(parent, service, time.monotonic() + RESTART_TIMEOUT)
        if pid is None:
            plan.problems.append(f"{service} was not running to be killed")
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        kill = Kill(service, pid, time.monotonic() - started)
        plan.kills.append(kill)
        say(f"SIGKILL {service} (pid {pid}) at {kill.at:.1f}s")
        if await _restarted(parent, service, pid, time.monotonic() + RESTART_TIMEOUT):
            kill.restarted_after = time.monotonic() - started - kill.at
        else:
            plan.problems.append(f"{service} was not restarted within {RESTART_TIMEOUT:.0f}s of its SIGKILL")
        wait = plan.gap * (1 + rng.random())
    return plan
