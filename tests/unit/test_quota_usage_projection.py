"""The ``quota_usage`` read model, fed hand-built events through the runner on a real PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

from contracts.quota import QuotaConsumed, QuotaReleased, QuotaScope, quota_id
from projections.rebuild import dump_read_models, reset_read_models
from tests.support.projections import Builder, Feeder, at, build, feed, read_models, slots  # noqa: F401

QID = quota_id(QuotaScope.PROJECT, "ml")


def usage(feed: Feeder, aggregate_id: str = QID) -> dict:
    cur = feed.conn.execute("SELECT * FROM quota_usage WHERE quota_id = %s", (aggregate_id,))
    row = cur.fetchone()
    assert row is not None
    return dict(zip([c.name for c in cur.description], row))


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
    feed.apply(released(build, "s2", slots("2", "2048")), released(build, "s3", slots("1", "1")))
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
