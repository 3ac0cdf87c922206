"""The event store's contract, run against every store the services use: eventsourcing's in-memory
(POPO) store, as in unit tests, and PostgreSQL through ``services.common.pg_recorder``.

What the callers rely on: a save of several aggregates is atomic; a stale version raises
``ConcurrencyError``; ``record`` returns the position and ``position()`` agrees; ``load`` is the
history in version order; ``current`` equals a full replay and reads only what is new;
``newer_than`` returns exactly what a stale view missed, in store order; notification ids increase,
a save's ids are contiguous and a reader following ``id > last`` (the relay) never skips one, even under
concurrent writers. The stored form and the travel guard: ``test_event_store_encoding.py``; snapshots
(a cold load costs the same at any age): ``test_event_store_snapshots.py``.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from contracts.envelope import Event
from domain import agent as agent_domain
from services.common.store import ConcurrencyError
from tests.support.event_store import NOW, Backend, agent_history, assigned, ids, notifications, registered
from tests.support.event_store import backend  # noqa: F401 - the fixture


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
