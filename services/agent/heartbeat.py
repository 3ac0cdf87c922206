"""Puts the agent's heartbeat in the KV bucket every interval (heartbeats are not events)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

import msgspec
from nats.js.kv import KeyValue

from contracts.reports import AgentHeartbeat
from services.common.waiting import first_of

__all__ = ["beat"]

log = logging.getLogger(__name__)


async def beat(
    kv: KeyValue, agent_id: str, interval: float, stop: asyncio.Event, clock: Callable[[], float] = time.time,
    busy: Callable[[], list[str]] = list, app_traffic: Callable[[], dict[str, float]] = dict,
) -> None:
    """Puts ``AgentHeartbeat`` under the key ``agent_id`` now and every ``interval`` seconds
    until ``stop`` is set, with the kernels ``busy`` says run an execution and when each kernel's apps last
    had traffic (``app_traffic``); a failed put is logged and retried at the next beat."""
    if interval <= 0:
        raise ValueError(f"the heartbeat interval must be positive, got {interval}")
    while not stop.is_set():
        try:
            heartbeat = AgentHeartbeat(agent_id=agent_id, sent_at=clock(), busy_kernels=busy(),
                                       app_traffic=app_traffic())
            await kv.put(agent_id, msgspec.json.encode(heartbeat))
        except Exception as exc:  # noqa: BLE001 - a missed beat is not fatal; the next one may pass
            log.warning("heartbeat of agent %s failed: %s", agent_id, exc)
        await first_of(stop, timeout=interval)
