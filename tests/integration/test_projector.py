"""The projector against a real NATS server and PostgreSQL, fed by the relay: rows follow the
events, bad messages go to ``dlq.projector`` without stopping it, and a rebuild gives
identical tables."""

from __future__ import annotations

import asyncio
import logging
import threading

import psycopg
import pytest
from nats.js import JetStreamContext

from contracts import commands as c
from contracts.session import KernelPlacement
from contracts.catalog import encode_event
from contracts.envelope import Event
from contracts.subjects import DEADLETTER_STREAM, EVENTS_STREAM, HEADER_ERROR, HEADER_ORIGINAL_SUBJECT, HEADER_POSITION, event_subject
from domain import agent as agent_domain
from domain import session as session_domain
from projections.position import read_position, wait_for_position
from projections.rebuild import dump_read_models, reset_read_models, secondary_indexes
from services.application.agents import Agents
from services.common.bus import ensure_streams
from services.common.bus_identities import ADMIN
from services.common.bus_trust import BusTrust
from services.application.context import make_context
from services.supervisor.embedded import NatsServer, free_port
from services.application.sessions import Sessions
from services.common.settings import Settings
from projections.runner import apply_batch
from services.projector import applier as applier_module
from services.projector import backfill as backfill_module
from services.projector import main as projector_main
from services.projector.main import rebuild_read_models, run_projector
from services.relay.main import run_relay
from tests.support.relay import (  # noqa: F401
    applied_position,
    applied_seq,
    has_schema,
    jetstream,
    own_nats,
    published,
    read_model_rows,
    request_sessions,
    run_until_stopped,
    sessions,
    settings,
    stop_task,
    store_ids,
)
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


async def caught_up(dsn: str, timeout: float = 30) -> None:
    target = max(store_ids(dsn), default=0)
    await async_wait_for(
        lambda: applied_position(dsn) >= target, timeout=timeout, message=f"projector did not reach {target}"
    )


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


async def test_rebuild_gives_identical_tables(settings: Settings, sessions: Sessions) -> None:
    relay = await run_until_stopped(run_relay, settings)
    projector = await run_until_stopped(run_projector, settings)
    await asyncio.to_thread(request_sessions, sessions, range(40))
    for i in range(0, 40, 4):
        sessions.terminate(f"s-{i}", make_context("ak-test"))
    await caught_up(settings.pg_dsn)
    await stop_task(*projector)
    with psycopg.connect(settings.pg_dsn) as conn:
        before, indexes = dump_read_models(conn), secondary_indexes(conn)
    reached = await rebuild_read_models(settings)
    assert reached.position == max(store_ids(settings.pg_dsn))
    with psycopg.connect(settings.pg_dsn) as conn:
        assert dump_read_models(conn) == before
        assert secondary_indexes(conn) == indexes  # left out during the bulk replay, back at its end
    assert len(before["sessions"]) == 40 and len(before["event_log"]) == 50

    # a rebuild while a projector runs converges to the same tables
    projector = await run_until_stopped(run_projector, settings)
    await rebuild_read_models(settings)
    await asyncio.to_thread(request_sessions, sessions, range(40, 45))
    await caught_up(settings.pg_dsn)
    await stop_task(*projector)
    await stop_task(*relay)
    with psycopg.connect(settings.pg_dsn) as conn:
        after = dump_read_models(conn)
    assert len(after["sessions"]) == 45 and after["event_log"][:50] == before["event_log"]


async def _published_and_projected(settings: Settings, sessions: Sessions, count: int) -> dict:
    """Has the relay publish ``count`` sessions' requests and the projector apply them; returns the read models."""
    relay = await run_until_stopped(run_relay, settings)
    projector = await run_until_stopped(run_projector, settings)
    await asyncio.to_thread(request_sessions, sessions, range(count))
    await caught_up(settings.pg_dsn)
    await stop_task(*projector)
    await stop_task(*relay)
    with psycopg.connect(settings.pg_dsn) as conn:
        return dump_read_models(conn)


async def test_a_large_live_batch_goes_in_bulk_and_commits_durably(
    settings: Settings, sessions: Sessions, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A live batch of ``BULK_FROM`` messages or more holds its rows and copies them (as a rebuild
    does) but, unlike a rebuild, waits for the WAL flush at commit; the tables are a rebuild's."""
    monkeypatch.setattr(projector_main, "BULK_FROM", 1)  # every live batch, however the feed cuts them
    applied: list[tuple[int, bool, bool]] = []

    def spy(conn, deliveries, **options):  # type: ignore[no-untyped-def]
        applied.append((len(deliveries), options["bulk"], options["durable"]))
        return apply_batch(conn, deliveries, **options)

    monkeypatch.setattr(applier_module, "apply_batch", spy)
    live = await _published_and_projected(settings, sessions, 30)
    assert applied and all(bulk and durable for _, bulk, durable in applied), applied
    assert sum(n for n, _, _ in applied) == 30
    applied.clear()
    await rebuild_read_models(settings)
    assert applied and all(bulk and not durable for _, bulk, durable in applied), applied
    with psycopg.connect(settings.pg_dsn) as conn:
        assert dump_read_models(conn) == live


async def test_a_rebuild_tells_how_far_it_got_after_each_batch(
    settings: Settings, sessions: Sessions, monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = await _published_and_projected(settings, sessions, 30)
    monkeypatch.setattr(projector_main, "REBUILD_BATCH_SIZE", 7)
    told: list[tuple[int, int]] = []
    reached = await rebuild_read_models(settings, progress=lambda applied, target: told.append((applied, target)))
    assert told == [(7, 30), (14, 30), (21, 30), (28, 30), (30, 30)] and reached.stream_seq == 30
    with psycopg.connect(settings.pg_dsn) as conn:
        assert dump_read_models(conn) == before


async def test_a_rebuild_reads_the_store_while_its_reset_runs_and_applies_nothing_before_the_reset_ended(
    settings: Settings, sessions: Sessions, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reset (dropping and creating every table) and the store's first read overlap: the reset
    here waits until the read began (it would wait in vain if the read came after it)."""
    before = await _published_and_projected(settings, sessions, 12)
    read_began, reset_ended = threading.Event(), threading.Event()
    overlapped: list[bool] = []
    applied_after_reset: list[bool] = []
    deliveries, reset, apply = backfill_module.StoreBackfill.deliveries, applier_module.reset_read_models, applier_module.apply_batch

    async def reading(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        read_began.set()
        return await deliveries(self, *args, **kwargs)

    def resetting(conn, **options):  # type: ignore[no-untyped-def]
        overlapped.append(read_began.wait(timeout=20))
        reset(conn, **options)
        reset_ended.set()

    def applying(conn, batch, **options):  # type: ignore[no-untyped-def]
        applied_after_reset.append(reset_ended.is_set())
        return apply(conn, batch, **options)

    monkeypatch.setattr(backfill_module.StoreBackfill, "deliveries", reading)
    monkeypatch.setattr(applier_module, "reset_read_models", resetting)
    monkeypatch.setattr(applier_module, "apply_batch", applying)
    reached = await rebuild_read_models(settings)
    assert overlapped == [True] and applied_after_reset and all(applied_after_reset)
    assert reached.stream_seq == 12
    with psycopg.connect(settings.pg_dsn) as conn:
        assert dump_read_models(conn) == before


async def test_a_rebuild_whose_reset_fails_fails_and_applies_nothing(
    settings: Settings, sessions: Sessions, monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = await _published_and_projected(settings, sessions, 6)
    applied: list[int] = []

    def refused(conn, **options):  # type: ignore[no-untyped-def]
        raise RuntimeError("the reset was refused")

    def applying(conn, batch, **options):  # type: ignore[no-untyped-def]
        applied.append(len(batch))

    monkeypatch.setattr(applier_module, "reset_read_models", refused)
    monkeypatch.setattr(applier_module, "apply_batch", applying)
    with pytest.raises(RuntimeError, match="the reset was refused"):
        await rebuild_read_models(settings)
    assert applied == []
    with psycopg.connect(settings.pg_dsn) as conn:
        assert dump_read_models(conn) == before


async def _projector_started_behind(settings: Settings, monkeypatch: pytest.MonkeyPatch, catch_up_from: int) -> list[int]:
    """Runs a projector with ``CATCH_UP_FROM`` at ``catch_up_from`` until it applied the whole store; returns
    the sizes of the batches it read from the event store."""
    monkeypatch.setattr(projector_main, "CATCH_UP_FROM", catch_up_from)
    read: list[int] = []
    deliveries = backfill_module.StoreBackfill.deliveries

    async def reading(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        batch = await deliveries(self, *args, **kwargs)
        read.append(len(batch))
        return batch

    monkeypatch.setattr(backfill_module.StoreBackfill, "deliveries", reading)
    projector = await run_until_stopped(run_projector, settings)
    await caught_up(settings.pg_dsn)
    await stop_task(*projector)
    return read


@pytest.mark.parametrize("catch_up_from, from_store", [(10, True), (10**6, False)])
async def test_a_projector_far_behind_at_start_catches_up_from_the_event_store(
    settings: Settings, sessions: Sessions, monkeypatch: pytest.MonkeyPatch, catch_up_from: int, from_store: bool,
) -> None:
    """``CATCH_UP_FROM`` messages or more behind the stream at start: the projector reads them from the
    event store (as a rebuild does, into the live tables); fewer: from the stream. The same tables."""
    live = await _published_and_projected(settings, sessions, 15)
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        reset_read_models(conn)  # as after downtime: every message of the stream still to apply
    read = await _projector_started_behind(settings, monkeypatch, catch_up_from)
    assert sum(read) == (len(live["event_log"]) if from_store else 0)
    with psycopg.connect(settings.pg_dsn) as conn:
        assert dump_read_models(conn) == live


async def test_a_rebuild_reads_the_event_store_when_it_holds_the_streams_events(
    settings: Settings, sessions: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    before = await _published_and_projected(settings, sessions, 30)
    async with jetstream(settings.nats_url) as js:
        await js.delete_msg(EVENTS_STREAM, 5)  # the stream path would have to fill this from the store
    caplog.set_level(logging.INFO, logger="services.projector.main")
    reached = await rebuild_read_models(settings)
    assert reached.position == max(store_ids(settings.pg_dsn)) and reached.stream_seq == 30
    with psycopg.connect(settings.pg_dsn) as conn:
        assert dump_read_models(conn) == before
    assert "applying from the event store: 30 events" in caplog.text
    assert "no longer holds" not in caplog.text  # no stream message was read, so no gap was seen


async def _three_stored_events_then_a_foreign_message(js: JetStreamContext, sessions: Sessions) -> None:
    """Has the (running) relay publish three sessions' requests, then publishes after them a message that is
    not a stored event (undecodable, without a position)."""
    await ensure_streams(js)
    await asyncio.to_thread(request_sessions, sessions, range(3))
    await async_wait_for(lambda: published(js, 3), timeout=30, message="the relay did not publish 3 events")
    await js.publish("ev.session.x.requested", b"not json")


async def test_a_rebuild_reads_the_stream_when_it_holds_what_the_store_does_not(
    settings: Settings, sessions: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    """A message in EVENTS that is not a stored event (here an undecodable one without a position)
    breaks the one-to-one numbering: the rebuild goes by the stream, which dead-letters it again."""
    relay = await run_until_stopped(run_relay, settings)
    async with jetstream(settings.nats_url) as js:
        await _three_stored_events_then_a_foreign_message(js, sessions)
        await asyncio.to_thread(request_sessions, sessions, range(3, 6))
        await async_wait_for(lambda: published(js, 7), timeout=30, message="the relay did not publish 3 more events")
    await stop_task(*relay)
    caplog.set_level(logging.INFO, logger="services.projector.main")
    reached = await rebuild_read_models(settings)
    assert reached.stream_seq == 7 and reached.position == max(store_ids(settings.pg_dsn))
    assert "applying from the stream" in caplog.text and "dead-lettered 1 messages" in caplog.text
    assert read_model_rows(settings.pg_dsn, "SELECT count(*) FROM sessions") == [(6,)]


async def test_a_catch_up_reads_the_store_when_the_stream_s_foreign_message_was_applied_before_it(
    settings: Settings, sessions: Sessions, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store and the stream are compared only over what is to apply: a message that is not a stored
    event, dead-lettered before the projector stopped, does not send its catch-up to the stream."""
    relay = await run_until_stopped(run_relay, settings)
    async with jetstream(settings.nats_url) as js:
        await _three_stored_events_then_a_foreign_message(js, sessions)
        projector = await run_until_stopped(run_projector, settings)
        await async_wait_for(lambda: applied_seq(settings.pg_dsn) >= 4, timeout=30, message="not applied")
        await stop_task(*projector)
        await asyncio.to_thread(request_sessions, sessions, range(3, 13))
        await async_wait_for(lambda: published(js, 14), timeout=30, message="the relay did not publish 10 more events")
    await stop_task(*relay)
    read = await _projector_started_behind(settings, monkeypatch, 5)
    assert sum(read) == 10
    assert read_model_rows(settings.pg_dsn, "SELECT count(*) FROM sessions") == [(13,)]


def _table_oid(dsn: str, table: str) -> int | None:
    """Returns the table's catalog id (a new one after the read models were dropped and recreated)."""
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT to_regclass(%s)::oid::bigint", (table,)).fetchone()[0]


def _built_after_rows(dsn: str, table: str) -> dict[str, bool]:
    """Returns, for each secondary index of ``table``, whether it was created after every row of the
    table was written (its catalog row's transaction id is newer than theirs): what a bulk rebuild
    does, unlike the incremental path, which creates the indexes with the empty tables."""
    with psycopg.connect(dsn) as conn:
        newest_row = conn.execute(f"SELECT max(xmin::text::bigint) FROM {table}").fetchone()[0]
        return {name: conn.execute("SELECT xmin::text::bigint FROM pg_class WHERE relname = %s",
                                   (name,)).fetchone()[0] > newest_row
                for name in secondary_indexes(conn) if name.startswith(f"{table}_")}


async def test_the_rebuild_flag_rebuilds_in_bulk_then_follows(settings: Settings, sessions: Sessions) -> None:
    relay = await run_until_stopped(run_relay, settings)
    projector = await run_until_stopped(run_projector, settings)
    await asyncio.to_thread(request_sessions, sessions, range(30))
    await caught_up(settings.pg_dsn)
    await stop_task(*projector)
    with psycopg.connect(settings.pg_dsn) as conn:
        before = dump_read_models(conn)
    assert not any(_built_after_rows(settings.pg_dsn, "event_log").values())  # the incremental path
    table_before = _table_oid(settings.pg_dsn, "event_log")

    rebuilding = await run_until_stopped(lambda s, stop: run_projector(s, stop, rebuild=True), settings)
    await async_wait_for(lambda: _table_oid(settings.pg_dsn, "event_log") != table_before, timeout=30,
                         message="the read models were not recreated")
    await caught_up(settings.pg_dsn)
    await async_wait_for(lambda: len(_built_after_rows(settings.pg_dsn, "event_log")) == 2, timeout=30,
                         message="the secondary indexes of event_log were not created")
    built_after = _built_after_rows(settings.pg_dsn, "event_log")
    assert built_after and all(built_after.values()), built_after  # bulk: indexes built after the rows
    with psycopg.connect(settings.pg_dsn) as conn:
        assert dump_read_models(conn) == before
    await asyncio.to_thread(request_sessions, sessions, range(30, 35))  # then it goes on incrementally
    await caught_up(settings.pg_dsn)
    await stop_task(*rebuilding)
    await stop_task(*relay)
    assert read_model_rows(settings.pg_dsn, "SELECT count(*) FROM sessions") == [(35,)]


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
