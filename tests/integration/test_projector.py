"""The projector against a real NATS server and PostgreSQL, fed by the relay: rows follow the
events, bad messages go to ``dlq.projector`` without stopping it, and it waits for NATS to come up
(rebuilds: ``test_projector_rebuild.py``; catch-ups from the event store: ``test_projector_catch_up.py``)."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from contracts import commands as c
from contracts.session import KernelPlacement
from contracts.catalog import encode_event
from contracts.envelope import Event
from contracts.subjects import DEADLETTER_STREAM, HEADER_ERROR, HEADER_ORIGINAL_SUBJECT, HEADER_POSITION, event_subject
from domain import agent as agent_domain
from domain import session as session_domain
from projections.position import read_position, wait_for_position
from services.application.agents import Agents
from services.common.bus import ensure_streams
from services.common.bus_identities import ADMIN
from services.common.bus_trust import BusTrust
from services.application.context import make_context
from services.supervisor.embedded import NatsServer, free_port
from services.application.sessions import Sessions
from services.common.settings import Settings
from services.projector import upkeep as upkeep_module
from services.projector.main import run_projector
from services.relay.main import run_relay
from tests.support.relay import (  # noqa: F401
    applied_position,
    has_schema,
    jetstream,
    own_nats,
    read_model_rows,
    request_sessions,
    run_until_stopped,
    sessions,
    settings,
    stop_task,
    store_ids,
)
from tests.support.projector import caught_up
from tests.support.waiting import async_wait_for
from tests.support.projections import Builder, slots


def schedule(app: Sessions, session_id: str, agent_id: str) -> int:
    """Places every kernel of a session on one agent, in one transaction (as the scheduler does)."""
    ctx = make_context("scheduler")
    state = app.get(session_id)
    assert state is not None
    placements = [KernelPlacement(kernel_id=k.kernel_id, agent_id=agent_id) for k in state.kernels]
    events = session_domain.decide(state, c.ScheduleSession(placements=placements), ctx, session_id)
    agent = agent_domain.replay(app.load(agent_id))
    for kernel in state.kernels:
        command = c.AssignKernel(kernel_id=kernel.kernel_id, session_id=session_id, image=state.spec.image, slots=kernel.slots)
        for event in agent_domain.decide(agent, command, ctx, agent_id):
            agent = agent_domain.evolve(agent, event)
            events.append(event)
    position = app.record(events)
    assert position is not None
    return position


@pytest.fixture
async def pipeline(settings: Settings):
    """Runs the relay and the projector in this event loop for the test."""
    relay = await run_until_stopped(run_relay, settings)
    projector = await run_until_stopped(run_projector, settings)
    yield
    await stop_task(*projector)
    await stop_task(*relay)


async def test_rows_follow_the_lifecycle(settings: Settings, sessions: Sessions, pipeline: None) -> None:
    agents = Agents(settings.pg_dsn)
    try:
        capacity = {"cpu": "4", "mem": "8g"}
        agents.handle("a1", c.RegisterAgent(capacity=capacity, backend="process", hostname="h1"), make_context("a1"))
    finally:
        agents.close()
    await asyncio.to_thread(request_sessions, sessions, range(3))
    schedule(sessions, "s-0", "a1")
    for command in (c.MarkKernelPreparing(kernel_id="k-0"), c.MarkKernelStarted(kernel_id="k-0", container_id="c0")):
        sessions.report("s-0", command, make_context("a1"))
    sessions.terminate("s-1", make_context("ak-test"))
    await caught_up(settings.pg_dsn)

    assert read_model_rows(settings.pg_dsn, "SELECT session_id, status, agent_ids FROM sessions ORDER BY 1") == [
        ("s-0", "RUNNING", ["a1"]),
        ("s-1", "CANCELLED", []),
        ("s-2", "PENDING", []),
    ]
    assert read_model_rows(settings.pg_dsn, "SELECT kernel_id, agent_id, status, container_id FROM kernels ORDER BY 1") == [
        ("k-0", "a1", "RUNNING", "c0"),
        ("k-1", None, "PENDING", None),
        ("k-2", None, "PENDING", None),
    ]
    assert read_model_rows(settings.pg_dsn, "SELECT agent_id, status, occupied, kernel_count FROM agents") == [
        ("a1", "ALIVE", {"cpu": "1", "mem": str(1024**3)}, 1)
    ]
    (history,) = read_model_rows(settings.pg_dsn, "SELECT status_history FROM sessions WHERE session_id = 's-0'")[0]
    assert set(history) == {"PENDING", "SCHEDULED", "PREPARING", "RUNNING"}
    logged = read_model_rows(settings.pg_dsn, "SELECT position FROM event_log ORDER BY position")
    assert [p for (p,) in logged] == store_ids(settings.pg_dsn)


async def test_malformed_message_is_dead_lettered_and_later_events_still_apply(
    settings: Settings, sessions: Sessions, pipeline: None
) -> None:
    await asyncio.to_thread(request_sessions, sessions, range(5))
    await caught_up(settings.pg_dsn)
    async with jetstream(settings.nats_url) as js:
        await ensure_streams(js)
        await js.publish("ev.session.x.requested", b'{"type": "session.requested", "name": 42}')
        await asyncio.to_thread(request_sessions, sessions, range(5, 10))
        await caught_up(settings.pg_dsn)
        dead = await js.get_msg(DEADLETTER_STREAM, subject="dlq.projector")
    assert dead.data == b'{"type": "session.requested", "name": 42}'
    assert dead.headers is not None
    assert dead.headers[HEADER_ORIGINAL_SUBJECT] == "ev.session.x.requested"
    assert "Berth-Position" in dead.headers[HEADER_ERROR]
    assert read_model_rows(settings.pg_dsn, "SELECT count(*) FROM sessions") == [(10,)]
    with psycopg.connect(settings.pg_dsn) as conn:
        assert read_position(conn).stream_seq == 11  # moved past the bad message


async def test_message_with_a_position_but_a_bad_payload_is_dead_lettered(settings: Settings) -> None:
    """Without the relay (whose resume point a forged Berth-Position would move): the stream is
    fed by hand, as the relay would, around one bad message."""
    projector = await run_until_stopped(run_projector, settings)
    builder = Builder()
    good = [builder.requested(f"s{i}", (f"k{i}", slots("1", "1024"))) for i in range(3)]
    async with jetstream(settings.nats_url) as js:
        await ensure_streams(js)
        await js.publish(_subject(good[0]), encode_event(good[0]), headers={HEADER_POSITION: "1"})
        await js.publish("ev.session.s1.requested", b"not json", headers={HEADER_POSITION: "2"})
        for position, event in enumerate(good[1:], start=3):
            await js.publish(_subject(event), encode_event(event), headers={HEADER_POSITION: str(position)})
        await async_wait_for(lambda: applied_position(settings.pg_dsn) >= 4, timeout=30)
        dead = await js.get_msg(DEADLETTER_STREAM, subject="dlq.projector")
    await stop_task(*projector)
    assert dead.headers is not None and "DecodeError" in dead.headers[HEADER_ERROR]
    assert "stream_seq 2, position 2" in dead.headers[HEADER_ERROR]
    assert read_model_rows(settings.pg_dsn, "SELECT session_id FROM sessions ORDER BY 1") == [("s0",), ("s1",), ("s2",)]
    assert read_model_rows(settings.pg_dsn, "SELECT position FROM event_log ORDER BY 1") == [(1,), (3,), (4,)]


def _subject(event: Event) -> str:
    return event_subject(type(event).type_name(), event.originator_id)


async def test_wait_for_position_returns_once_applied(settings: Settings, sessions: Sessions, pipeline: None) -> None:
    await async_wait_for(lambda: has_schema(settings.pg_dsn), timeout=30, message="projector did not create its tables")
    (position,) = await asyncio.to_thread(request_sessions, sessions, range(1))
    async with await psycopg.AsyncConnection.connect(settings.pg_dsn, autocommit=True) as conn:
        assert await wait_for_position(conn, position, timeout=30) >= position
        with pytest.raises(TimeoutError):
            await wait_for_position(conn, position + 1000, timeout=0.2)


async def test_services_wait_for_nats_to_come_up(tmp_path, pg_dsn: str, sessions: Sessions) -> None:
    server = NatsServer()
    port = free_port()
    trust = BusTrust.load_or_create(NatsServer.trust_dir(tmp_path / "late-nats"))  # the one it will start with
    settings = Settings(nats_url=f"nats://127.0.0.1:{port}", pg_dsn=pg_dsn, nats_creds=str(trust.credentials(ADMIN)))
    projector = await run_until_stopped(run_projector, settings)
    relay = await run_until_stopped(run_relay, settings)
    await asyncio.to_thread(request_sessions, sessions, range(3))
    server.start(tmp_path / "late-nats", port=port)
    try:
        await caught_up(pg_dsn)
        await stop_task(*relay)
        await stop_task(*projector)
    finally:
        server.stop()
    assert read_model_rows(pg_dsn, "SELECT count(*) FROM sessions") == [(3,)]


def _manual_vacuums(dsn: str, table: str) -> int:
    return read_model_rows(dsn, "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = %s", table)[0][0]


async def test_the_projector_vacuums_a_read_model_whose_rows_died(
    settings: Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever PostgreSQL's autovacuum does (off here for the table), the projector's upkeep vacuums a
    read-model table once enough of its rows are dead (``projections.upkeep``)."""
    monkeypatch.setattr(upkeep_module, "UPKEEP_EVERY", 0.05)
    projector = await run_until_stopped(run_projector, settings)
    await async_wait_for(lambda: has_schema(settings.pg_dsn), timeout=30, message="projector did not create its tables")
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:  # closed: its statistics reach the server's
        conn.execute("ALTER TABLE domains SET (autovacuum_enabled = false)")
        conn.execute("INSERT INTO domains SELECT 'd' || i, '', '{}', now(), now(), 1, i FROM generate_series(1, 200) AS i")
        conn.execute("DELETE FROM domains")
    try:
        await async_wait_for(lambda: _manual_vacuums(settings.pg_dsn, "domains") >= 1, timeout=30,
                             message="the projector did not vacuum the domains' 200 dead rows")
    finally:
        await stop_task(*projector)
