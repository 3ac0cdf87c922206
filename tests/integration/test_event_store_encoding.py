"""The event store's contract, its stored form and its travel guard, against the in-memory and PostgreSQL stores
(``test_event_store_contract.py``): the bytes stored are the canonical msgspec JSON under the stable type name,
an older (flat) form still loads, and the travel guard refuses what cannot be published and records nothing."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

from contracts import agent as agent_events
from contracts import quota as quota_events
from contracts import session as session_events
from contracts.catalog import decode_event, encode_event
from contracts.envelope import Event, Metadata
from contracts.status import Reason, SessionType
from contracts.travel import MAX_EVENT_BYTES, TravelError
from domain import session as session_domain
from domain.emitting import Context, Emitter
from tests.support.event_store import NOW, SLOTS, Backend, assigned, ids, notifications, registered
from tests.support.event_store import backend  # noqa: F401 - the fixture


# --- the stored form ----------------------------------------------------------------------------


def test_the_bytes_stored_are_the_canonical_msgspec_json_under_the_stable_type_name(backend: Backend) -> None:
    store = backend.store
    meta = Metadata(actor="AK1", correlation_id="corr", causation_id="cause", trace={"traceparent": "00-abc-01"})
    ctx = Context(now=NOW, metadata=meta)
    events: list[Event] = [
        Emitter("s1", 0, ctx)(
            session_events.SessionRequested, owner="AK1", spec=session_events.SessionSpec(
                name="n", image="img", kernels=[session_events.KernelSpec(kernel_id="s1-k0", slots=SLOTS)],
                startup_command="echo \u00e9\u2603",
            ),
        ),
        Emitter("quota_keypair_AK1", 0, ctx)(
            quota_events.QuotaConsumed, scope=quota_events.QuotaScope.KEYPAIR, name="AK1", allocations={"s1": SLOTS},
        ),
        registered("a1"),
        Emitter("a1", 1, ctx)(agent_events.KernelTerminationRequested, kernel_id="k", session_id="s1",
                              reason=list(Reason)[0]),
    ]
    store.record(events)

    log = notifications(store)
    assert [(n.originator_id, n.originator_version) for n in log] == ids(events)
    for stored, event in zip(log, events, strict=True):
        assert stored.topic == type(event).type_name(), "the stable type name, never a Python path"
        assert bytes(stored.state) == encode_event(event), "the very bytes the relay publishes"
        assert decode_event(bytes(stored.state)) == event
    assert store.load("s1") == events[:1]
    assert b'"cpu":"1.5"' in encode_event(events[0]), "Decimals are strings, never floats"

    if backend.dsn is not None:  # the table every context shares, as the relay and tools read it
        with psycopg.connect(backend.dsn) as conn:
            rows = conn.execute(
                "SELECT originator_id, originator_version, topic, state FROM berth_events ORDER BY notification_id"
            ).fetchall()
        assert [(r[0], r[1], r[2], bytes(r[3])) for r in rows] == [
            (e.originator_id, e.originator_version, type(e).type_name(), encode_event(e)) for e in events
        ]


FLAT_REQUESTED = (
    b'{"type":"session.requested","event_id":"00000000-0000-0000-0000-000000000001","originator_id":"s-old",'
    b'"originator_version":1,"timestamp":"2026-01-01T00:00:00Z","metadata":{"actor":"AK1","correlation_id":"c1",'
    b'"causation_id":null,"trace":{}},"name":"old","owner":"AK1","image":"py","session_type":"batch",'
    b'"kernels":[{"kernel_id":"s-old-k0","cluster_role":"main","cluster_idx":0,"slots":{"cpu":"1.5","mem":"1024"}}],'
    b'"startup_command":"make","user":"alice","domain":"lab","project":"ml","resource_group":"default","priority":10,'
    b'"cluster_mode":"single-node","starts_at":null,"batch_timeout":60,"dependencies":[],"designated_agents":[]}'
)
"""A ``session.requested`` as stored before ``SessionSpec`` (its fields flat beside ``owner``)."""


def test_history_stored_in_the_flat_form_loads_with_the_nested_spec(backend: Backend) -> None:
    backend.store.recorder.insert_events([StoredEvent(
        originator_id="s-old", originator_version=1, topic="session.requested", state=FLAT_REQUESTED)])
    peer = backend.open()

    (event,) = peer.load("s-old")
    state = peer.current("s-old", session_domain.evolve)

    assert isinstance(event, session_events.SessionRequested) and event.owner == "AK1"
    assert event.spec == session_events.SessionSpec(
        name="old", image="py", session_type=SessionType.BATCH, startup_command="make", user="alice", domain="lab",
        project="ml", batch_timeout=60,
        kernels=[session_events.KernelSpec(kernel_id="s-old-k0", slots={"cpu": Decimal("1.5"), "mem": Decimal(1024)})],
    )
    assert state is not None and state.spec == event.spec and state.version == 1


# --- the travel guard ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["oversized", "dot in id", "space in id", "empty id", "wildcard id", "long id"])
def test_the_travel_guard_refuses_an_event_that_cannot_be_published_and_records_nothing(
    backend: Backend, bad: str
) -> None:
    store = backend.store
    store.record([registered("a1")])
    position, before = store.position(), [(n.id, n.state) for n in notifications(store)]
    offender = {
        "oversized": assigned("a1", 3, startup_command="x" * MAX_EVENT_BYTES),
        "dot in id": registered("a.b"),
        "space in id": registered("a b"),
        "empty id": registered(""),
        "wildcard id": registered(">"),
        "long id": registered("x" * 129),
    }[bad]
    batch = [assigned("a1", 2), registered("a2"), offender]

    with pytest.raises(TravelError):
        store.record(batch)

    assert store.position() == position
    assert [(n.id, n.state) for n in notifications(store)] == before
    assert ids(store.load("a1")) == [("a1", 1)] and store.load("a2") == []
    assert store.record(batch[:2]) == store.position(), "the rest of the save goes through without the offender"


def test_an_event_just_within_the_size_limit_is_recorded(backend: Backend) -> None:
    store = backend.store
    store.record([registered("a1")])
    probe = assigned("a1", 2, startup_command="")
    event = assigned("a1", 2, startup_command="x" * (MAX_EVENT_BYTES - len(encode_event(probe))))
    assert len(encode_event(event)) == MAX_EVENT_BYTES
    store.record([event])
    assert store.load("a1")[-1] == event
