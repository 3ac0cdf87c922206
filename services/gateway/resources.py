"""What the gateway holds while it runs: the read-model pool and position watcher, the event store, NATS,
the auth tables, and the per-keypair request rate and subscription counts.

Everything opens lazily on the first request (or at ASGI lifespan startup), so the
app also works under transports that skip lifespan, such as ``httpx.ASGITransport``.
The blocking event store runs on a small bounded thread pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, Callable, TypeVar

from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
from psycopg_pool import AsyncConnectionPool

from contracts.commands import RecordExecution, RequestSession
from contracts.tenancy import KeypairLimits
from domain.emitting import Context
from projections.position import PositionWatcher, read_position_async
from services.application.facade import Facade
from services.application.group_commit import GroupCommit
from services.common.bus import connect
from services.application.sessions import Sessions
from services.application.tenancy import Tenancy
from services.application.vfolders import VFolders
from services.common.pg_limits import limited_dsn
from services.common.settings import Settings
from services.gateway.auth.keypairs import KEYPAIRS_DDL
from services.gateway.auth.middleware import MAX_IN_FLIGHT
from services.gateway.auth.limits_epoch import LIMITS_EPOCH, LIMITS_EVENTS_TRIGGER_DDL
from services.gateway.auth.principal import Principal
from services.gateway.auth.replay import SEEN_SIGNATURES_DDL
from services.gateway.auth.revocation import KeypairWatch
from services.gateway.auth.tokens import TOKENS_DDL
from services.gateway.auth.verify import Authenticator
from services.gateway.errors import SUBSCRIPTION_LIMIT, UNAVAILABLE, GatewayError
from services.gateway.execution_audit import ExecutionAudit
from services.gateway.keyed_turns import KeyedTurns
from services.gateway.keypair_limits import KeypairLimitsCache
from services.gateway.rate_limit import RateDecision, RateLimiter
from services.gateway.pending_gate import PendingGate
from services.gateway.pool_check import SweepingCheck
from services.gateway.subscription_slots import SubscriptionSlots

__all__ = ["CONTROL_CONNECTION", "OUTPUT_CONNECTION", "POOL_WAIT", "READ_WAIT", "Resources"]

log = logging.getLogger(__name__)
T = TypeVar("T")
SessionRequest = tuple[str, RequestSession, Context]
READ_WAIT = 10.0
POOL_WAIT = 5.0
"""Seconds a request waits for a read-model connection (psycopg_pool's default is 30). PostgreSQL back
within it (a restart): the request goes on; else it is answered 503 UNAVAILABLE with ``Retry-After``,
having changed nothing, and the client sends it again (the SDK and the CLI do)."""
STORE_THREADS = 4
CONTROL_CONNECTION = "berth-gateway"
"""The name of the gateway's NATS connection of requests to agents and event subscriptions (``Resources.nats``)."""
OUTPUT_CONNECTION = "berth-gateway-output"
"""The name of its NATS connection of runs' output (``Resources.output_nats``)."""


class Resources:
    """Opens, lends and closes the gateway's connections."""

    def __init__(self, settings: Settings, *, nats: Nats | None = None, read_wait: float = READ_WAIT) -> None:
        if not settings.pg_dsn:
            raise ValueError("the gateway needs a PostgreSQL DSN (BERTH_PG_DSN)")
        self.settings = settings
        self.read_wait = read_wait
        check = SweepingCheck()
        self.pool = AsyncConnectionPool(
            limited_dsn(settings.pg_dsn), min_size=1, max_size=8, open=False, kwargs={"autocommit": True}, name="gateway",
            timeout=POOL_WAIT, check=check, reset=check.returned,
        )
        """A connection idle for a second or more is checked as it is handed out; a dead one has every idle
        one checked (``pool_check``)."""
        check.pool = self.pool
        self.positions = self._position_watcher()  # read-your-writes: one LISTEN connection
        self.authenticator = Authenticator(self.pool)
        self.keypair_limits = KeypairLimitsCache(self._load_limits)
        """Each keypair's policy limits (rate limit, subscriptions), as of the caller's limits epoch."""
        self.rate_limiter = RateLimiter()
        self.subscription_slots = SubscriptionSlots()
        self.socket_slots = SubscriptionSlots()
        """Websocket connections per keypair (``view.BerthGraphQL``), within the same policy limit."""
        self.requests_in_flight = KeyedTurns(MAX_IN_FLIGHT)
        """Each keypair's GraphQL requests served at once: its HTTP requests (``auth.middleware``) and its websockets'
        queries and mutations (``ws_operations``), at most ``MAX_IN_FLIGHT`` together."""
        self.pending_gate = PendingGate()
        """The turns of the keypairs whose policy limits their pending sessions (``enqueue.enqueued``)."""
        self.keypair_watch = KeypairWatch(self.pool)
        """Closes websockets of deactivated keypairs (one re-check every 2 s for all of them)."""
        self._nats = nats
        self._own_nats = nats is None
        self._output_nats: Nats | None = None
        """Runs' output (``output_nats``): opened on first use, beside ``_nats``; the handed-in client when one is."""
        self._store = Facade("gateway-store", STORE_THREADS)
        self._sessions: Sessions | None = None
        self._tenancy: Tenancy | None = None
        self._vfolders: VFolders | None = None
        self._requests: GroupCommit[SessionRequest, int] | None = None
        self._terminations: GroupCommit[tuple[str, Context], int] | None = None
        self.execution_audit = ExecutionAudit(self._record_execution)
        """Records each run's ``session.execution_finished`` off the critical path (drained by ``close``)."""
        self._lock = asyncio.Lock()
        self._started = False

    def _position_watcher(self) -> PositionWatcher:
        """The read-your-writes watcher: its own LISTEN connection, and the pool's meanwhile when that cannot be
        opened (PostgreSQL refusing new connections)."""
        return PositionWatcher(limited_dsn(self.settings.pg_dsn), fallback=self._stored_position)

    async def _stored_position(self) -> int:
        async with self.pool.connection() as conn:
            return (await read_position_async(conn)).position

    @property
    def sessions(self) -> Sessions:
        """Returns the session use cases (call them through ``call``)."""
        assert self._sessions is not None, "Resources.start() first"
        return self._sessions

    @property
    def session_requests(self) -> GroupCommit[SessionRequest, int]:
        """Records ``(session_id, RequestSession, ctx)`` requests, concurrent ones in one transaction
        (``Sessions.request_many``): ``await resources.session_requests.submit(request)``."""
        assert self._requests is not None, "Resources.start() first"
        return self._requests

    @property
    def session_terminations(self) -> GroupCommit[tuple[str, Context], int]:
        """Records user-requested terminations ``(session_id, ctx)``, concurrent ones in one transaction
        (``Sessions.terminate_many``): ``await resources.session_terminations.submit(item)``."""
        assert self._terminations is not None, "Resources.start() first"
        return self._terminations

    @property
    def tenancy(self) -> Tenancy:
        """Returns the tenancy use cases (call them through ``call``)."""
        assert self._tenancy is not None, "Resources.start() first"
        return self._tenancy

    @property
    def vfolders(self) -> VFolders:
        """Returns the folder use cases (call them through ``call``)."""
        assert self._vfolders is not None, "Resources.start() first"
        return self._vfolders

    async def start(self) -> None:
        """Opens the pool and the event store and creates the auth tables; does nothing when started."""
        if self._started:
            return
        async with self._lock:
            if self._started:
                return
            await self.pool.open(wait=True, timeout=30)
            async with self.pool.connection() as conn:
                await conn.execute(KEYPAIRS_DDL)
                await conn.execute(TOKENS_DDL)
                await conn.execute(SEEN_SIGNATURES_DDL)
            self._sessions = await self._store.open(Sessions, self.settings.pg_dsn)
            self._tenancy = await self._store.open(Tenancy, self.settings.pg_dsn)
            self._vfolders = await self._store.open(VFolders, self.settings.pg_dsn)
            async with self.pool.connection() as conn:  # the event table exists now
                await conn.execute(LIMITS_EVENTS_TRIGGER_DDL)
            self._requests = GroupCommit(self._store, self._sessions.request_many)
            self._terminations = GroupCommit(self._store, self._sessions.terminate_many)
            self._started = True

    async def admit(self, principal: Principal) -> RateDecision:
        """Counts one request of ``principal`` against its policy's ``rate_limit``."""
        return self.rate_limiter.take(principal.access_key, (await self.limits(principal)).rate_limit)

    async def take_socket_slot(self, principal: Principal) -> Callable[[], None]:
        """Takes one of ``principal``'s websocket slots (a GraphQL websocket, an app tunnel) and returns what gives
        it back: a keypair holds at most its policy's ``max_concurrent_subscriptions`` websockets, subscribed to
        anything or not (each is a socket held; without a bound, one keypair could hold every one the gateway has).
        SUBSCRIPTION_LIMIT past them."""
        limit = (await self.limits(principal)).max_concurrent_subscriptions  # authenticated just now
        if not self.socket_slots.acquire(principal.access_key, limit):
            raise GatewayError(SUBSCRIPTION_LIMIT, f"too many websocket connections: your resource policy allows "
                                                   f"{limit} open at once (max_concurrent_subscriptions); close one "
                                                   "first")
        return functools.partial(self.socket_slots.release, principal.access_key)

    async def limits(self, principal: Principal) -> KeypairLimits:
        """The policy limits of ``principal``'s keypair as of its authentication (cached by its limits epoch:
        no read); ``current_limits`` for a principal authenticated long ago."""
        return await self.keypair_limits.get(principal.access_key, principal.limits_epoch)

    async def current_limits(self, principal: Principal) -> KeypairLimits:
        """The policy limits of ``principal``'s keypair as of now, not as of its authentication (a
        websocket may have been authenticated hours ago): one read of the limits epoch."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(f"SELECT {LIMITS_EPOCH}")
            row = await cur.fetchone()
        assert row is not None
        return await self.keypair_limits.get(principal.access_key, row[0])

    async def _load_limits(self, access_key: str) -> KeypairLimits:
        await self.start()
        return await self.call(self.tenancy.keypair_limits, access_key)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Returns ``fn(*args, **kwargs)`` run on the store's thread pool."""
        return await self._store.call(fn, *args, **kwargs)

    async def _record_execution(self, session_id: str, command: RecordExecution, ctx: Context,
                                seen_version: int | None) -> None:
        await self.start()
        await self.call(self.sessions.record_execution, session_id, command, ctx, seen_version=seen_version)

    async def nats(self) -> Nats:
        """Returns the NATS connection of control requests to agents (runs, interrupts, logs, app tunnels) and of
        subscriptions to events, connecting to ``settings.nats_url`` on first use."""
        if self._nats is None:
            async with self._lock:
                if self._nats is None:
                    self._nats = await self._connect(CONTROL_CONNECTION)
        return self._nats

    async def output_nats(self) -> Nats:
        """Returns the NATS connection that carries runs' output (``io.agent.<agent>.<kernel>.<run>``), connecting to
        ``settings.nats_url`` on first use, with the same credential as ``nats()``; a client handed in serves both.

        Output floods (up to 8 Mi characters a second per agent, ``services.agent.output_rate``, from many agents)
        are queued by nats-server for the connection that subscribed to them: on the one connection of everything,
        control replies waited behind seconds of output, and a gateway reading too slowly was cut as a slow consumer
        (past the server's max pending), failing every request and stream of every tenant. On its own, a cut of it
        is a gap in the streams of the runs then streaming (``run_output.read_run`` tells their clients
        ``truncated``); requests go on on ``nats()``."""
        if not self._own_nats:
            return await self.nats()
        if self._output_nats is None:
            async with self._lock:
                if self._output_nats is None:
                    self._output_nats = await self._connect(OUTPUT_CONNECTION)
        return self._output_nats

    async def _connect(self, name: str) -> Nats:
        if not self.settings.nats_url:
            raise GatewayError(UNAVAILABLE, "subscriptions and execution need NATS: set BERTH_NATS_URL")
        return await connect(self.settings.nats_url, name, self.settings.nats_creds or None)

    def bus_closed(self) -> bool:
        """Whether a NATS connection of the gateway (``nats()``, ``output_nats()``), once opened (or handed in), is
        closed for good: nats-py reconnects no more (after ``close()`` or a protocol error of the server), so every
        subscription and request to an agent, or every run's output, fails from then on; the gateway ends
        (``main.run_gateway``) and ``/healthz`` says ``bus-closed`` meanwhile. An outage of either (nats-py
        reconnecting) is waited out."""
        return any(nc is not None and nc.is_closed for nc in (self._nats, self._output_nats))

    async def jetstream(self) -> JetStreamContext:
        """Returns a JetStream context, connecting to ``settings.nats_url`` on first use."""
        return (await self.nats()).jetstream()

    async def close(self) -> None:
        """Closes what this object opened (both NATS connections; a client handed in stays open), after the queued
        execution records are written."""
        await self.execution_audit.close()
        if self._own_nats:
            for nc in (self._output_nats, self._nats):
                if nc is not None:
                    await nc.close()
            self._nats = self._output_nats = None
        await self.positions.close()
        await self.keypair_watch.close()
        self.positions = self._position_watcher()  # a restart listens afresh
        for commits in (self._requests, self._terminations):
            if commits is not None:
                await commits.close()
        await self.pool.close()
        self._sessions = self._tenancy = self._requests = self._terminations = None
        self._vfolders = None
        await self._store.close()  # closes the use cases it opened, then its threads
        self._started = False
