"""The event store's contract, run against every store the services use: eventsourcing's in-memory
(POPO) store, as in unit tests, and PostgreSQL through ``services.common.pg_recorder``.

What the callers rely on: a save of several aggregates is atomic; a stale version raises
``ConcurrencyError``; ``record`` returns the position and ``position()`` agrees; ``load`` is the
history in version order; ``current`` equals a full replay and reads only what is new;
``newer_than`` returns exactly what a stale view missed, in store order; the bytes stored are the
canonical msgspec JSON under the stable type name; the travel guard refuses what cannot be
published and records nothing; notification ids increase, a save's ids are contiguous and a
reader following ``id > last`` (the relay) never skips one, even under concurrent writers.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

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
from domain import agent as agent_domain
from domain import session as session_domain
from domain.emitting import Context, Emitter
from services.common import snapshots
from services.common.store import BerthApplication, ConcurrencyError
from tests.support.read_counting import CountsReads

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SLOTS = {"cpu": Decimal("1.5"), "mem": Decimal(1024**3)}


class CountingStore(CountsReads, BerthApplication):
    """The application as the services use it, counting what ``current`` reads from the store."""

    long_lived = frozenset({agent_domain.evolve})


@dataclass
class Backend:
    kind: str
    store: CountingStore
    open: Callable[[], BerthApplication]
    """Opens another application on the same store (PostgreSQL: another connection pool, as
    another service would; in memory: the store itself, the only one that shares its log)."""
    dsn: str | None = None


@pytest.fixture(params=["memory", "postgres"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "memory":
        store = CountingStore(None)
        yield Backend("memory", store, lambda: store)
        store.close()
        return
    dsn: str = request.getfixturevalue("pg_dsn")
    store = CountingStore(dsn)
    opened: list[BerthApplication] = []

    def open_peer() -> BerthApplication:
        opened.append(BerthApplication(dsn))
        return opened[-1]

    yield Backend("postgres", store, open_peer, dsn)
    for app in opened:
        app.close()
    store.close()


# --- events ------------------------------------------------------------------------------------


def _ctx(now: dt.datetime = NOW) -> Context:
    return Context(now=now, metadata=Metadata(actor="contract-test", correlation_id="corr"))


def registered(agent_id: str, *, now: dt.datetime = NOW) -> Event:
    return Emitter(agent_id, 0, _ctx(now))(
        agent_events.AgentRegistered, capacity={"cpu": Decimal(64), "mem": Decimal(2**40)}, backend="sim", hostname="h"
    )


def assigned(agent_id: str, version: int, *, now: dt.datetime = NOW, startup_command: str | None = None) -> Event:
    """``KernelAssigned`` as version ``version`` of ``agent_id``."""
    return Emitter(agent_id, version - 1, _ctx(now))(
        agent_events.KernelAssigned, kernel_id=f"{agent_id}-k{version}", session_id=f"s{version}", image="img",
        slots=SLOTS, startup_command=startup_command,
    )


def agent_history(agent_id: str, length: int, *, now: dt.datetime = NOW) -> list[Event]:
    """Versions 1..length of an agent: registered, then kernels assigned."""
    return [registered(agent_id, now=now)] + [assigned(agent_id, v, now=now) for v in range(2, length + 1)]


def ids(events: Sequence[Event]) -> list[tuple[str, int]]:
    return [(e.originator_id, e.originator_version) for e in events]


def notifications(app: BerthApplication) -> list[Any]:
    return list(app.recorder.select_notifications(start=1, limit=1_000_000))  # type: ignore[attr-defined]


# --- position, load, ids ------------------------------------------------------------------------


def test_record_returns_the_last_position_and_position_agrees(backend: Backend) -> None:
    store = backend.store
    assert store.position() == 0
    assert store.record([]) is None
    assert store.position() == 0

    first = store.record(agent_history("a1", 3))
    assert first is not None and first == store.position()
    second = store.record([assigned("a1", 4), registered("a2")])
    assert second == store.position() == first + 2, "a save's ids follow on from the last save's"
    assert [n.id for n in notifications(store)][-1] == second


def test_notification_ids_increase_and_follow_the_saves(backend: Backend) -> None:
    store = backend.store
    positions = [store.record(agent_history(f"a{i}", i)) for i in range(1, 6)]
    log = notifications(store)
    log_ids = [n.id for n in log]
    assert log_ids == sorted(set(log_ids)), "strictly increasing"
    assert positions == sorted(set(positions))  # type: ignore[type-var]
    assert [(n.originator_id, n.originator_version) for n in log] == [
        (f"a{i}", v) for i in range(1, 6) for v in range(1, i + 1)
    ], "the log holds each save's events in the order given"
    assert store.position() == positions[-1] == log_ids[-1]


def test_load_returns_the_history_in_version_order(backend: Backend) -> None:
    store = backend.store
    history = agent_history("a1", 7)
    store.record(history[:2])
    store.record([registered("other")])
    store.record(history[2:5] + [assigned("other", 2)])
    store.record(history[5:])

    assert store.load("a1") == history
    assert [type(e) for e in store.load("a1")] == [type(e) for e in history]
    assert ids(store.load("other")) == [("other", 1), ("other", 2)]
    assert store.load("nobody") == []


# --- optimistic concurrency and atomicity -------------------------------------------------------


def test_a_stale_version_raises_concurrency_error_and_keeps_the_winner(backend: Backend) -> None:
    store = backend.store
    store.record([registered("a1")])
    winner, loser = assigned("a1", 2), assigned("a1", 2, now=NOW + dt.timedelta(seconds=1))
    position = store.record([winner])

    with pytest.raises(ConcurrencyError):
        backend.open().record([loser])

    assert ids(store.load("a1")) == [("a1", 1), ("a1", 2)]
    assert store.load("a1")[1] == winner
    assert store.position() == position
    # the store is still usable, and ids keep increasing after the failed save
    after = store.record([assigned("a1", 3)])
    assert after is not None and position is not None and after > position


def test_a_conflict_on_one_aggregate_saves_none_of_the_others(backend: Backend) -> None:
    store = backend.store
    store.record([registered("a1"), registered("a2")])
    before = [(n.id, n.originator_id, n.originator_version, n.state) for n in notifications(store)]
    position = store.position()

    batch = [assigned("a1", 2), registered("a3"), registered("a2", now=NOW + dt.timedelta(seconds=5))]  # a2 v1: stale
    with pytest.raises(ConcurrencyError):
        store.record(batch)

    assert [(n.id, n.originator_id, n.originator_version, n.state) for n in notifications(store)] == before
    assert store.position() == position
    assert ids(store.load("a1")) == [("a1", 1)]
    assert store.load("a3") == []
    assert store.current("a1", agent_domain.evolve) == agent_domain.replay(store.load("a1"))

    # refreshed, the same save without the stale event goes through as one
    last = store.record(batch[:2])
    assert last == store.position()
    assert ids(store.load("a1")) == [("a1", 1), ("a1", 2)] and ids(store.load("a3")) == [("a3", 1)]


def test_two_writers_racing_on_one_aggregate_record_exactly_one(backend: Backend) -> None:
    store = backend.store
    store.record([registered("a1")])
    writers = [backend.open() for _ in range(4)]
    barrier = threading.Barrier(len(writers))
    outcomes: list[str] = []
    lock = threading.Lock()

    def write(i: int) -> None:
        barrier.wait()
        try:
            writers[i].record([assigned("a1", 2, now=NOW + dt.timedelta(seconds=i))])
            outcome = "saved"
        except ConcurrencyError:
            outcome = "conflict"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(writers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert sorted(outcomes) == ["conflict"] * (len(writers) - 1) + ["saved"]
    assert ids(store.load("a1")) == [("a1", 1), ("a1", 2)]


# --- current and newer_than ---------------------------------------------------------------------


def test_current_equals_a_full_replay_and_reads_only_new_events(backend: Backend) -> None:
    store = backend.store
    writer = backend.open()  # another service's writes must be seen too (PostgreSQL)
    writer.record(agent_history("a1", 21))
    applied: list[tuple[str, int]] = []

    def evolve(state: agent_domain.AgentState | None, event: Event) -> agent_domain.AgentState:
        applied.append((event.originator_id, event.originator_version))
        return agent_domain.evolve(state, event)

    first = store.current("a1", evolve)
    assert first == agent_domain.replay(store.load("a1"))
    assert first is not None and first.version == 21
    assert store.reads == [("a1", 0, 21)] and len(applied) == 21

    writer.record([assigned("a1", 22), registered("a2"), assigned("a1", 23)])
    store.reads.clear()
    applied.clear()
    second = store.current("a1", evolve)
    assert store.reads == [("a1", 21, 2)], "read only the two events after the cached version"
    assert applied == [("a1", 22), ("a1", 23)]
    assert second == agent_domain.replay(store.load("a1"))
    assert second is not None and second.version == 23 and len(second.allocations) == 22

    store.reads.clear()
    applied.clear()
    assert store.current("a1", evolve) == second
    assert store.reads == [("a1", 23, 0)] and applied == []

    assert store.current("nobody", evolve) is None
    # a different evolve is a different state: built from the start, not from another's cache
    store.reads.clear()
    assert store.current("a1", agent_domain.evolve) == second
    assert store.reads == [("a1", 0, 23)]


def test_newer_than_returns_exactly_the_missed_events_in_store_order(backend: Backend) -> None:
    store = backend.store
    t0, t1, t2 = (NOW + dt.timedelta(seconds=s) for s in (0, 1, 2))  # one clock per save, as decisions stamp them
    store.record(agent_history("a", 2, now=t0) + [registered("b", now=t0)])
    store.record([assigned("b", 2, now=t1), registered("c", now=t1), assigned("a", 3, now=t1)])
    store.record([registered("d", now=t2), assigned("c", 2, now=t2), assigned("b", 3, now=t2)])

    known = {"c": 0, "a": 1, "b": 2, "d": 1, "nobody": 0}
    missed = store.newer_than(known)

    in_store_order = [
        (n.originator_id, n.originator_version) for n in notifications(store)
        if n.originator_id in known and n.originator_version > known[n.originator_id]
    ]
    assert ids(missed) == in_store_order == [("a", 2), ("c", 1), ("a", 3), ("c", 2), ("b", 3)]
    assert {ids([e])[0]: e for e in missed} == {
        ids([e])[0]: e for agg in known for e in store.load(agg) if e.originator_version > known[agg]
    }, "the very events stored"
    assert store.newer_than({}) == []
    assert store.newer_than({"a": 3, "b": 3, "c": 2, "d": 1}) == []


def test_newer_than_keeps_store_order_when_timestamps_disagree(backend: Backend) -> None:
    """Store order is the notification order, whatever the events' clocks say (a writer whose
    context was stamped earlier may commit later; one decision stamps all its events alike)."""
    store = backend.store
    store.record([registered("late", now=NOW + dt.timedelta(seconds=10))])
    store.record([registered("early", now=NOW)])  # stamped earlier, committed later
    store.record([registered("z", now=NOW), registered("y", now=NOW)])  # one decision, one timestamp

    missed = store.newer_than({"y": 0, "z": 0, "early": 0, "late": 0})

    assert ids(missed) == [("late", 1), ("early", 1), ("z", 1), ("y", 1)]


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


# --- concurrent writers and a following reader --------------------------------------------------


def test_concurrent_saves_get_contiguous_non_interleaved_ids_and_a_follower_skips_none(backend: Backend) -> None:
    threads_n, saves_per_thread, events_per_save = 8, 6, 25
    writers = [backend.open() for _ in range(threads_n)]
    reader = backend.open()
    barrier = threading.Barrier(threads_n + 1)
    done = threading.Event()
    returned: dict[str, int] = {}
    errors: list[BaseException] = []
    seen: list[int] = []
    lock = threading.Lock()

    def write(i: int) -> None:
        try:
            barrier.wait()
            for j in range(saves_per_thread):
                aggregate = f"t{i}-s{j}"
                position = writers[i].record(agent_history(aggregate, events_per_save))
                assert position is not None
                with lock:
                    returned[aggregate] = position
        except BaseException as exc:  # reported below
            errors.append(exc)

    def follow() -> None:  # the relay's read: ids above the last one seen, in id order
        try:
            barrier.wait()
            last = 0
            while True:
                finished = done.is_set()
                recorder = reader.recorder
                batch = recorder.select_notifications(start=last, limit=50, inclusive_of_start=False)  # type: ignore[attr-defined]
                for n in batch:
                    seen.append(n.id)
                    last = n.id
                if finished and not batch:
                    return
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(threads_n)]
    follower = threading.Thread(target=follow)
    for t in [*threads, follower]:
        t.start()
    for t in threads:
        t.join(timeout=120)
    done.set()
    follower.join(timeout=120)
    assert not errors, errors
    assert not any(t.is_alive() for t in [*threads, follower])

    log = notifications(backend.store)
    total = threads_n * saves_per_thread * events_per_save
    assert len(log) == total
    by_save: dict[str, list[int]] = {}
    for n in log:
        by_save.setdefault(n.originator_id, []).append(n.id)
    spans = sorted((ids_[0], ids_[-1], aggregate) for aggregate, ids_ in by_save.items())
    for aggregate, save_ids in by_save.items():
        assert save_ids == list(range(save_ids[0], save_ids[0] + events_per_save)), f"{aggregate}: contiguous ids"
        assert returned[aggregate] == save_ids[-1], f"{aggregate}: record returned its last id"
    for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
        assert end < start, f"the ids of {a} and {b} interleave"
    assert seen == [n.id for n in log], "the follower saw every id once, in order, skipping none"
    assert backend.store.position() == log[-1].id


# --- snapshots: a cold load costs the same at any age ----------------------------------------------


def _fresh(backend: Backend) -> CountingStore:
    """An application as a process that just started would open it (nothing cached)."""
    if backend.dsn is None:
        pytest.skip("a new process cannot open the in-memory store of another")
    return CountingStore(backend.dsn)


def test_a_cold_load_reads_a_bounded_number_of_events_after_ten_thousand(backend: Backend) -> None:
    history = agent_history("a1", 10_000)
    for start in range(0, len(history), 1000):
        backend.store.record(history[start:start + 1000])
    warm = backend.store.current("a1", agent_domain.evolve)  # the first load ever reads it all, once
    fresh = _fresh(backend)
    try:
        cold = fresh.current("a1", agent_domain.evolve)
        assert cold == warm == agent_domain.replay(fresh.load("a1"))
        assert sum(n for _, _, n in fresh.reads) <= snapshots.EVERY, fresh.reads
        # It keeps holding as the aggregate grows: the warm store writes a snapshot as it passes each step.
        for version in range(10_001, 10_001 + 2 * snapshots.EVERY + 7):
            backend.store.record([assigned("a1", version)])
            backend.store.current("a1", agent_domain.evolve)
        later = _fresh(backend)
        try:
            assert later.current("a1", agent_domain.evolve) == agent_domain.replay(later.load("a1"))
            assert sum(n for _, _, n in later.reads) <= snapshots.EVERY, later.reads
        finally:
            later.close()
    finally:
        fresh.close()


def _put(store: BerthApplication, aggregate_id: str, snapshot: snapshots.Snapshot) -> None:
    store.recorder.put_snapshot(aggregate_id, snapshots.codec_of(agent_domain.evolve).kind, snapshot)  # type: ignore[attr-defined]


def test_a_snapshot_the_store_does_not_back_is_ignored(backend: Backend) -> None:
    fresh = _fresh(backend)
    try:
        backend.store.record(agent_history("a1", 3))
        ahead = snapshots.codec_of(agent_domain.evolve).encode(agent_domain.replay(agent_history("a1", 500)))
        assert ahead is not None
        _put(backend.store, "a1", ahead)  # e.g. the database was restored from an older backup
        assert fresh.current("a1", agent_domain.evolve) == agent_domain.replay(fresh.load("a1"))
        assert fresh.current("a1", agent_domain.evolve).version == 3  # type: ignore[union-attr]
    finally:
        fresh.close()


def test_a_snapshot_of_an_older_state_shape_is_ignored(backend: Backend) -> None:
    fresh = _fresh(backend)
    try:
        backend.store.record(agent_history("a1", 5))
        snapshot = snapshots.codec_of(agent_domain.evolve).encode(agent_domain.replay(agent_history("a1", 5)))
        assert snapshot is not None
        _put(backend.store, "a1", snapshot._replace(fingerprint="older-shape", state=b'{"not": "a state"}'))
        assert fresh.current("a1", agent_domain.evolve) == agent_domain.replay(fresh.load("a1"))
        assert sum(n for _, _, n in fresh.reads) == 5, "the history was read instead"
    finally:
        fresh.close()
