"""Rebuilding the read models in bulk (``rebuild_read_models``, ``--rebuild``): the same tables as the live
projector's, read from the event store or from the stream, with the reset and the indexes around the replay."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading

import psycopg
import pytest

from contracts.subjects import EVENTS_STREAM
from projections.rebuild import dump_read_models, secondary_indexes
from projections.runner import apply_batch
from services.application.context import make_context
from services.application.sessions import Sessions
from services.common.settings import Settings
from services.projector import applier as applier_module
from services.projector import backfill as backfill_module
from services.projector import main as projector_main
from services.projector.main import rebuild_read_models, run_projector
from services.relay.main import run_relay
from services.supervisor.embedded import NatsServer
from tests.support.projector import (
    caught_up,
    published_and_projected,
    read_models_dump,
    three_stored_events_then_a_foreign_message,
)
from tests.support.relay import (  # noqa: F401
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
    after = read_models_dump(settings.pg_dsn)
    assert len(after["sessions"]) == 45 and after["event_log"][:50] == before["event_log"]


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
    live = await published_and_projected(settings, sessions, 30)
    assert applied and all(bulk and durable for _, bulk, durable in applied), applied
    assert sum(n for n, _, _ in applied) == 30
    applied.clear()
    await rebuild_read_models(settings)
    assert applied and all(bulk and not durable for _, bulk, durable in applied), applied
    assert read_models_dump(settings.pg_dsn) == live


async def test_a_rebuild_tells_how_far_it_got_after_each_batch(
    settings: Settings, sessions: Sessions, monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = await published_and_projected(settings, sessions, 30)
    monkeypatch.setattr(projector_main, "REBUILD_BATCH_SIZE", 7)
    told: list[tuple[int, int]] = []
    reached = await rebuild_read_models(settings, progress=lambda applied, target: told.append((applied, target)))
    assert told == [(7, 30), (14, 30), (21, 30), (28, 30), (30, 30)] and reached.stream_seq == 30
    assert read_models_dump(settings.pg_dsn) == before


async def test_a_rebuild_replays_without_the_cyclic_collector_and_restores_it_after(
    settings: Settings, sessions: Sessions, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The collector walked every event, delivery and row a batch holds, a dozen times per 20,000 events."""
    before = await published_and_projected(settings, sessions, 12)
    monkeypatch.setattr(projector_main, "REBUILD_BATCH_SIZE", 5)
    collecting: list[bool] = []
    assert gc.isenabled()
    reached = await rebuild_read_models(settings, progress=lambda applied, target: collecting.append(gc.isenabled()))
    assert reached.stream_seq == 12 and collecting == [False, False, False]
    assert gc.isenabled()
    assert read_models_dump(settings.pg_dsn) == before


async def test_a_rebuild_begun_while_nats_is_away_waits_for_it_and_resets_nothing_meanwhile(
    settings: Settings, sessions: Sessions, own_nats: NatsServer, caplog: pytest.LogCaptureFixture,
) -> None:
    """NATS restarting (or a cluster electing its leader) when ``berth projections rebuild`` begins: the
    rebuild says it waits and does, the read models untouched meanwhile, then rebuilds them once NATS is back."""
    before = await published_and_projected(settings, sessions, 9)
    data_dir, port = own_nats.data_dir, own_nats.port
    assert data_dir is not None
    own_nats.stop()
    caplog.set_level(logging.WARNING)
    rebuilding = asyncio.ensure_future(rebuild_read_models(settings))
    try:
        await async_wait_for(lambda: "NATS unreachable" in caplog.text, timeout=30,
                             message="the rebuild did not say it waits for NATS")
        assert not rebuilding.done(), rebuilding
        assert read_models_dump(settings.pg_dsn) == before  # not reset while it cannot go on
        own_nats.start(data_dir, port=port)
        reached = await asyncio.wait_for(asyncio.shield(rebuilding), timeout=120)
    finally:
        rebuilding.cancel()
        await asyncio.gather(rebuilding, return_exceptions=True)
    assert reached.stream_seq == 9
    assert read_models_dump(settings.pg_dsn) == before


async def test_a_rebuild_reads_the_store_while_its_reset_runs_and_applies_nothing_before_the_reset_ended(
    settings: Settings, sessions: Sessions, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reset (dropping and creating every table) and the store's first read overlap: the reset
    here waits until the read began (it would wait in vain if the read came after it)."""
    before = await published_and_projected(settings, sessions, 12)
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
    assert read_models_dump(settings.pg_dsn) == before


async def test_a_rebuild_whose_reset_fails_fails_and_applies_nothing(
    settings: Settings, sessions: Sessions, monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = await published_and_projected(settings, sessions, 6)
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
    assert read_models_dump(settings.pg_dsn) == before


async def test_a_rebuild_reads_the_event_store_when_it_holds_the_streams_events(
    settings: Settings, sessions: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    before = await published_and_projected(settings, sessions, 30)
    async with jetstream(settings.nats_url) as js:
        await js.delete_msg(EVENTS_STREAM, 5)  # the stream path would have to fill this from the store
    caplog.set_level(logging.INFO, logger="services.projector.main")
    reached = await rebuild_read_models(settings)
    assert reached.position == max(store_ids(settings.pg_dsn)) and reached.stream_seq == 30
    assert read_models_dump(settings.pg_dsn) == before
    assert "applying from the event store: 30 events" in caplog.text
    assert "no longer holds" not in caplog.text  # no stream message was read, so no gap was seen


async def test_a_rebuild_reads_the_stream_when_it_holds_what_the_store_does_not(
    settings: Settings, sessions: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    """A message in EVENTS that is not a stored event (here an undecodable one without a position)
    breaks the one-to-one numbering: the rebuild goes by the stream, which dead-letters it again."""
    relay = await run_until_stopped(run_relay, settings)
    async with jetstream(settings.nats_url) as js:
        await three_stored_events_then_a_foreign_message(js, sessions)
        await asyncio.to_thread(request_sessions, sessions, range(3, 6))
        await async_wait_for(lambda: published(js, 7), timeout=30, message="the relay did not publish 3 more events")
    await stop_task(*relay)
    caplog.set_level(logging.INFO, logger="services.projector.main")
    reached = await rebuild_read_models(settings)
    assert reached.stream_seq == 7 and reached.position == max(store_ids(settings.pg_dsn))
    assert "applying from the stream" in caplog.text and "dead-lettered 1 messages" in caplog.text
    assert read_model_rows(settings.pg_dsn, "SELECT count(*) FROM sessions") == [(6,)]


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
    before = read_models_dump(settings.pg_dsn)
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
    assert read_models_dump(settings.pg_dsn) == before
    await asyncio.to_thread(request_sessions, sessions, range(30, 35))  # then it goes on incrementally
    await caught_up(settings.pg_dsn)
    await stop_task(*rebuilding)
    await stop_task(*relay)
    assert read_model_rows(settings.pg_dsn, "SELECT count(*) FROM sessions") == [(35,)]
