"""The ``event_log`` read model: every event, whatever its type, with its envelope."""

from __future__ import annotations

import json
import uuid

from contracts import tenancy
from contracts.catalog import encode_event
from contracts.status import Reason, SessionStatus
from tests.support.projections import META, Builder, Feeder, at, build, feed, read_models, slots  # noqa: F401


def test_every_event_is_logged_with_its_envelope(feed: Feeder, build: Builder) -> None:
    requested = build.requested("s1", ("k1", slots("1", "1024")))
    feed.apply(requested, build.status("s1", SessionStatus.CANCELLED, Reason.USER_REQUESTED))
    rows = feed.rows(
        "SELECT position, stream_seq, event_id, type, context, aggregate_id, aggregate_version, occurred_at,"
        " actor, correlation_id, causation_id FROM event_log ORDER BY position"
    )
    assert rows == [
        (1, 1, uuid.UUID(int=1), "session.requested", "session", "s1", 1, at(1), "ak-test", "corr-1", "cause-1"),
        (2, 2, uuid.UUID(int=2), "session.status_changed", "session", "s1", 2, at(2), "ak-test", "corr-1", "cause-1"),
    ]
    (payload,) = feed.row("SELECT payload::text FROM event_log WHERE position = 1")  # type: ignore[misc]
    assert json.loads(payload) == json.loads(encode_event(requested))


def test_the_payload_is_logged_byte_for_byte_as_stored(feed: Feeder, build: Builder) -> None:
    delivery = feed.delivery(build.requested("s1", ("k1", slots("1", "1024"))))
    feed.apply(delivery)
    (payload,) = feed.row("SELECT payload::text FROM event_log WHERE position = 1")  # type: ignore[misc]
    assert payload.encode() == delivery.data  # not reordered nor respaced (the bulk path gives the same tables)


def test_events_without_a_read_model_are_only_logged(feed: Feeder, build: Builder) -> None:
    result = feed.apply(build(tenancy.KeypairCreated, "AKTEST", user="u1", role=tenancy.Role.USER))
    assert (result.applied, result.rejected) == (1, 0)
    assert feed.rows("SELECT type, context, aggregate_id FROM event_log") == [("keypair.created", "keypair", "AKTEST")]
    counts = feed.row("SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM kernels), (SELECT count(*) FROM agents)")
    assert counts == (0, 0, 0)


def test_unknown_future_event_type_is_only_logged(feed: Feeder) -> None:
    future = {
        "type": "volume.grown",
        "event_id": str(uuid.UUID(int=7)),
        "originator_id": "proj-1",
        "originator_version": 3,
        "timestamp": "2026-01-01T12:00:00Z",
        "metadata": {"actor": "scheduler", "correlation_id": "c9"},
        "amount": {"cpu": "2"},
    }
    result = feed.apply(feed.raw("ev.volume.proj-1.grown", json.dumps(future).encode(), "1"))
    assert (result.applied, result.rejected, result.position) == (1, 0, 1)
    assert feed.rows("SELECT type, context, aggregate_id, aggregate_version, actor FROM event_log") == [
        ("volume.grown", "volume", "proj-1", 3, "scheduler")
    ]
