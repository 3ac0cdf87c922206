"""Composition root of the controller: the REPORTS consumer, the liveness watch, the sweep of
lost agents' kernels and the session timeouts."""

from __future__ import annotations

import asyncio
import logging

from contracts import agent as agent_ev
from contracts import commands as c
from contracts.envelope import Event
from contracts.status import AgentStatus, Reason
from contracts.subjects import REPORTS_STREAM
from services.application.agents import Agents
from services.application.facade import Facade
from services.common.bus import connect, ensure_streams, heartbeat_bucket
from services.common.consumer import consume
from services.application.context import make_context
from services.application.sessions import Sessions
from services.common.settings import Settings
from services.common.follow import follow
from services.common.waiting import until
from services.controller.agent_lost import AgentLostSweeper, LostAgents, sweep_lost_agents
from services.controller.liveness import Liveness, check_liveness, watch_heartbeats
from services.controller.reports import ReportHandler, ReportProcessor
from services.controller.timeouts import TIMEOUT_SUBJECTS, Deadlines, enforce_timeouts

__all__ = ["AGENT_SUBJECTS", "DURABLE", "REPORT_SUBJECT", "TIMEOUT_SUBJECTS", "run_controller"]

log = logging.getLogger(__name__)

DURABLE = "controller"
REPORT_SUBJECT = "rp.>"
AGENT_SUBJECTS = ("ev.agent.*.registered", "ev.agent.*.lost", "ev.agent.*.recovered")
ACTOR = "service:controller"
REPORT_BATCH = 256
"""Reports fetched at once; their progress reports are recorded in one transaction."""

_STATUS_OF = {
    agent_ev.AgentRegistered: AgentStatus.ALIVE,
    agent_ev.AgentRecovered: AgentStatus.ALIVE,
    agent_ev.AgentLost: AgentStatus.LOST,
}


async def run_controller(settings: Settings, stop: asyncio.Event) -> None:
    """Runs the controller until ``stop`` is set."""
    if not settings.nats_url or not settings.pg_dsn:
        raise ValueError("the controller needs BERTH_NATS_URL and BERTH_PG_DSN")
    if settings.heartbeat_interval <= 0 or settings.heartbeat_timeout <= 0:
        raise ValueError(
            "BERTH_HEARTBEAT_INTERVAL and BERTH_HEARTBEAT_TIMEOUT must be positive, "
            f"got {settings.heartbeat_interval} and {settings.heartbeat_timeout}"
        )
    store = Facade("controller-store", 4)
    sessions = await store.open(Sessions, settings.pg_dsn)
    agents = await store.open(Agents, settings.pg_dsn)
    nc = await connect(settings.nats_url, "berth-controller")
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        kv = await heartbeat_bucket(js)
        liveness = Liveness(settings.heartbeat_timeout)
        lost = LostAgents()
        deadlines, changed, caught_up = Deadlines(), asyncio.Event(), asyncio.Event()
        sweeper = AgentLostSweeper(sessions, agents)

        def on_agent_event(event: Event) -> None:
            status = _STATUS_OF.get(type(event))
            if status is not None:
                liveness.status(event.originator_id, status)
                if status is AgentStatus.LOST:
                    lost.lost(event.originator_id)
                else:
                    lost.alive(event.originator_id)

        def on_session_event(event: Event) -> None:
            deadlines.apply(event)
            changed.set()

        async def apply(agent_id: str, command: c.Command) -> object:
            return await store.call(agents.handle, agent_id, command, make_context(ACTOR))

        async def sweep(agent_id: str) -> bool:
            return await store.call(sweeper.sweep, agent_id)

        async def terminate(session_id: str, reason: Reason) -> object:
            return await store.call(sessions.terminate, session_id, make_context(ACTOR), reason)

        async def timeouts() -> None:
            await until(caught_up, stop)  # judge on the whole history, not a replay half-way
            await enforce_timeouts(deadlines, terminate, changed, stop)

        subs = [await follow(js, AGENT_SUBJECTS, on_agent_event, asyncio.Event()),
                await follow(js, TIMEOUT_SUBJECTS, on_session_event, caught_up)]
        handler = ReportHandler(ReportProcessor(sessions, agents), store)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(
                    consume(
                        js, durable=DURABLE, subject=REPORT_SUBJECT, stream=REPORTS_STREAM, batch_handler=handler, stop=stop,
                        batch=REPORT_BATCH,
                    )
                )
                tasks.create_task(watch_heartbeats(kv, liveness, stop))
                tasks.create_task(check_liveness(liveness, apply, settings.heartbeat_interval, stop))
                tasks.create_task(sweep_lost_agents(lost, sweep, settings.heartbeat_interval, stop))
                tasks.create_task(timeouts())
        finally:
            for sub in subs:
                await sub.unsubscribe()
    finally:
        await nc.close()
        await store.close()

