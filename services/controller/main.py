"""Composition root of the controller: the REPORTS consumer, the liveness watch, the sweep of
lost agents' kernels, the session timeouts and the stuck-session deadlines (what it consumes: the tables of ``flow.py``)."""

from __future__ import annotations

import asyncio
import functools
import logging

from contracts import commands as c
from contracts.status import Reason
from services.application.agents import Agents
from services.application.facade import Facade
from services.application.vfolders import VFolders
from services.common.bus import ensure_streams, heartbeat_bucket
from services.common.bus_closed import stop_broker
from services.common.flow import consume, follow, open_broker
from services.application.context import make_context
from services.application.sessions import Sessions
from services.common.settings import Settings
from services.common.waiting import until
from services.controller.agent_lost import AgentLostSweeper, LostAgents, sweep_lost_agents
from services.controller.flow import AGENTS, DEADLINES, DURABLE, REPORTS_IN, STORAGE_REPORTS_IN, AgentWatch, DeadlineWatch
from services.controller.liveness import Liveness, check_liveness, kernel_activity, latest_heartbeat, watch_heartbeats
from services.controller.reports import ReportHandler, ReportProcessor
from services.controller.storage_reports import StorageReportHandler
from services.controller.stuck import StuckDeadlines, StuckSessionSweeper
from services.controller.timeouts import Deadlines, enforce_timeouts, spare_busy

__all__ = ["DURABLE", "run_controller"]

log = logging.getLogger(__name__)

ACTOR = "service:controller"


async def run_controller(settings: Settings, stop: asyncio.Event) -> None:
    """Runs the controller until ``stop`` is set."""
    if not settings.nats_url or not settings.pg_dsn:
        raise ValueError("the controller needs BERTH_NATS_URL and BERTH_PG_DSN")
    if settings.heartbeat_interval <= 0 or settings.heartbeat_timeout <= 0:
        raise ValueError(
            "BERTH_HEARTBEAT_INTERVAL and BERTH_HEARTBEAT_TIMEOUT must be positive, "
            f"got {settings.heartbeat_interval} and {settings.heartbeat_timeout}"
        )
    limits = settings.stuck_deadlines()
    store = Facade("controller-store", 4)
    sessions = await store.open(Sessions, settings.pg_dsn)
    agents = await store.open(Agents, settings.pg_dsn)
    vfolders = await store.open(VFolders, settings.pg_dsn)
    broker = open_broker(settings.nats_url, "berth-controller", settings.nats_creds or None)
    nc = await broker.connect()
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        kv = await heartbeat_bucket(js)
        liveness = Liveness(settings.heartbeat_timeout)
        lost = LostAgents(settings.agent_lost_grace)
        deadlines, changed, caught_up = Deadlines(), asyncio.Event(), asyncio.Event()
        sweeper = AgentLostSweeper(sessions, agents)
        stuck, stuck_changed, stuck_sweeper = StuckDeadlines(limits), asyncio.Event(), StuckSessionSweeper(sessions, agents)

        async def apply(agent_id: str, command: c.Command) -> object:
            return await store.call(agents.handle, agent_id, command, make_context(ACTOR))

        async def sweep(agent_id: str) -> bool:
            return await store.call(sweeper.sweep, agent_id)

        async def terminate(session_id: str, reason: Reason) -> object:
            return await store.call(sessions.terminate, session_id, make_context(ACTOR), reason)

        async def kernels_of(session_id: str) -> list[tuple[str, str]]:
            state = await store.call(sessions.get, session_id)
            return [] if state is None else [(k.kernel_id, k.agent_id) for k in state.kernels if k.agent_id]

        async def expire(session_id: str, reason: Reason) -> object:
            stay = stuck.stay(session_id)
            if stay is None:  # it moved on since it was found due
                return None
            return await store.call(stuck_sweeper.expire, session_id, *stay)

        async def timeouts() -> None:
            await until(caught_up, stop)  # judge on the whole history, not a replay half-way
            sparing = spare_busy(terminate, deadlines, kernels_of, functools.partial(kernel_activity, kv))
            await enforce_timeouts(deadlines, sparing, changed, stop)

        async def stuck_sessions() -> None:
            await until(caught_up, stop)
            await enforce_timeouts(stuck, expire, stuck_changed, stop)

        await broker.start()
        subs = [await follow(js, AGENTS, AgentWatch(liveness, lost), asyncio.Event()),
                await follow(js, DEADLINES, DeadlineWatch(deadlines, changed, stuck, stuck_changed), caught_up)]
        handler = ReportHandler(ReportProcessor(sessions, agents), store)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(consume(broker, js, REPORTS_IN, handler, stop))
                tasks.create_task(consume(broker, js, STORAGE_REPORTS_IN, StorageReportHandler(vfolders, store), stop))
                tasks.create_task(watch_heartbeats(kv, liveness, stop))
                tasks.create_task(check_liveness(liveness, apply, settings.heartbeat_interval, stop,
                                                 functools.partial(latest_heartbeat, kv)))
                tasks.create_task(sweep_lost_agents(lost, sweep, settings.heartbeat_interval, stop))
                tasks.create_task(timeouts())
                tasks.create_task(stuck_sessions())
        finally:
            for sub in subs:
                await sub.stop()
    finally:
        await stop_broker(broker)
        await store.close()

