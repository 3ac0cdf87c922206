"""The ``quota_usage`` and ``quota_usage_sessions`` read models, fed hand-built events through the runner on
a real PostgreSQL."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from contracts.quota import QuotaConsumed, QuotaReleased, QuotaScope, quota_id
from projections.rebuild import dump_read_models, reset_read_models
from projections.schema import create_schema
from projections.writer import Writer
from tests.support.projections import Builder, Feeder, at, build, feed, read_models, slots  # noqa: F401

QID = quota_id(QuotaScope.PROJECT, "ml")


def usage(feed: Feeder, aggregate_id: str = QID) -> dict:
    cur = feed.conn.execute("SELECT * FROM quota_usage WHERE quota_id = %s", (aggregate_id,))
    row = cur.fetchone()
    assert row is not None
    held = feed.conn.execute("SELECT session_id, slots FROM quota_usage_sessions WHERE quota_id = %s",
                             (aggregate_id,)).fetchall()
    return {**dict(zip([c.name for c in cur.description], row)), "sessions": dict(held)}


def consumed(build: Builder, **allocations: dict[str, Decimal]) -> QuotaConsumed:
    return build(QuotaConsumed, QID, scope=QuotaScope.PROJECT, name="ml", allocations=allocations)


def released(build: Builder, session_id: str, amount: dict[str, Decimal]) -> QuotaReleased:
    return build(QuotaReleased, QID, scope=QuotaScope.PROJECT, name="ml", session_id=session_id, slots=amount)


def test_consumptions_add_and_releases_subtract_each_session(feed: Feeder, build: Builder) -> None:
    feed.apply(consumed(build, s1=slots("1.5", "1024"), s2=slots("2", "2048", cuda_shares="0.5")))
    row = usage(feed)
    assert (row["scope"], row["name"], row["session_count"], row["version"], row["updated_at"]) == (
        "project", "ml", 2, 1, at(1))
    assert row["slots"] == {"cpu": "3.5", "mem": "3072", "cuda.shares": "0.5"}
    assert set(row["sessions"]) == {"s1", "s2"}
    feed.apply(consumed(build, s3=slots("1", "1")), released(build, "s1", slots("1.5", "1024")))
    row = usage(feed)
    assert row["slots"] == {"cpu": "3", "mem": "2049", "cuda.shares": "0.5"}
    assert row["sessions"] == {"s2": {"cpu": "2", "mem": "2048", "cuda.shares": "0.5"}, "s3": {"cpu": "1", "mem": "1"}}
    assert (row["session_count"], row["version"]) == (2, 3)
    feed.apply(released(build, "s2", slots("2", "2048", cuda_shares="0.5")), released(build, "s3", slots("1", "1")))
    row = usage(feed)
    assert (row["slots"], row["sessions"], row["session_count"]) == ({}, {}, 0)


def test_a_release_without_a_consumption_is_dead_lettered(feed: Feeder, build: Builder) -> None:
    result = feed.apply(released(build, "s1", slots("1", "1")))
    assert result.rejected == 1 and f"no quota {QID}" in feed.rejected[0].error
    assert feed.rows("SELECT * FROM quota_usage") == []


def test_a_rebuild_gives_identical_rows(feed: Feeder, build: Builder) -> None:
    events = [consumed(build, s1=slots("1", "1"), s2=slots("2", "2")), released(build, "s1", slots("1", "1")),
              build(QuotaConsumed, quota_id(QuotaScope.DOMAIN, "d"), scope=QuotaScope.DOMAIN, name="d",
                    allocations={"s2": slots("2", "2")})]
    feed.apply(*events)
    before = dump_read_models(feed.conn)
    assert len(before["quota_usage"]) == 2
    reset_read_models(feed.conn)
    again = Feeder(feed.conn)
    for event in events:
        again.apply(event)
    assert dump_read_models(feed.conn) == before


def test_a_change_writes_the_same_whatever_the_scope_holds(feed: Feeder, build: Builder,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A domain holds thousands of sessions: a consumption or a release writes the sum and the one
    session's row, never the map of every session the scope holds."""
    written: list[int] = []
    execute = Writer.execute

    def measuring(self: Writer, query: str, params: Any = ()) -> None:
        written.append(sum(len(str(p)) for p in params))
        execute(self, query, params)

    def bytes_written(*events: Any) -> int:
        written.clear()
        feed.apply(*events)
        return sum(written)

    monkeypatch.setattr(Writer, "execute", measuring)
    feed.apply(consumed(build, s0=slots("1", "1")))
    early = bytes_written(consumed(build, s1=slots("1", "1")))
    feed.apply(*(consumed(build, **{f"h{i}": slots("1", "1")}) for i in range(300)))
    late = bytes_written(consumed(build, s2=slots("1", "1")))
    assert late <= early + 64, f"a consumption wrote {late} bytes with 302 sessions held, {early} with 1"  # digits grow
    assert bytes_written(released(build, "s2", slots("1", "1"))) <= early + 64
    assert usage(feed)["session_count"] == 302


def test_the_map_of_an_older_schema_moves_to_its_own_rows(feed: Feeder) -> None:
    conn = feed.conn
    conn.execute("DROP TABLE quota_usage, quota_usage_sessions")
    conn.execute("CREATE TABLE quota_usage (quota_id text PRIMARY KEY, scope text NOT NULL, name text NOT NULL,"
                 " slots jsonb NOT NULL, sessions jsonb NOT NULL, session_count integer NOT NULL,"
                 " updated_at timestamptz NOT NULL, version integer NOT NULL)")
    held = {"s1": {"cpu": "1", "mem": "1"}, "s2": {"cpu": "2", "mem": "2"}}
    conn.execute("INSERT INTO quota_usage VALUES (%s, 'project', 'ml', %s, %s, 2, now(), 2)",
                 (QID, json.dumps({"cpu": "3", "mem": "3"}), json.dumps(held)))
    create_schema(conn)
    create_schema(conn)  # again: nothing left to move
    row = usage(feed)
    assert "sessions" in row and row["sessions"] == held
    assert (row["slots"], row["session_count"]) == ({"cpu": "3", "mem": "3"}, 2)
    columns = {c.name for c in conn.execute("SELECT * FROM quota_usage LIMIT 0").description or ()}
    assert "sessions" not in columns
