"""The event store's contract, its snapshots, against the in-memory and PostgreSQL stores
(``test_event_store_contract.py``): a cold load reads a bounded number of events whatever the history's
length, and a snapshot the store does not back, or of an older state shape, is ignored."""

from __future__ import annotations


import pytest

from domain import agent as agent_domain
from services.common import snapshots
from services.common.store import BerthApplication
from tests.support.event_store import Backend, CountingStore, agent_history, assigned
from tests.support.event_store import backend  # noqa: F401 - the fixture


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


def _snapshot_of(length: int) -> snapshots.Snapshot:
    """The snapshot of agent a1 after ``length`` events of ``agent_history``."""
    snapshot = snapshots.codec_of(agent_domain.evolve).encode(agent_domain.replay(agent_history("a1", length)))
    assert snapshot is not None
    return snapshot


def test_a_snapshot_the_store_does_not_back_is_ignored(backend: Backend) -> None:
    fresh = _fresh(backend)
    try:
        backend.store.record(agent_history("a1", 3))
        _put(backend.store, "a1", _snapshot_of(500))  # e.g. the database was restored from an older backup
        assert fresh.current("a1", agent_domain.evolve) == agent_domain.replay(fresh.load("a1"))
        assert fresh.current("a1", agent_domain.evolve).version == 3  # type: ignore[union-attr]
    finally:
        fresh.close()


def test_a_snapshot_of_an_older_state_shape_is_ignored(backend: Backend) -> None:
    fresh = _fresh(backend)
    try:
        backend.store.record(agent_history("a1", 5))
        _put(backend.store, "a1", _snapshot_of(5)._replace(fingerprint="older-shape", state=b'{"not": "a state"}'))
        assert fresh.current("a1", agent_domain.evolve) == agent_domain.replay(fresh.load("a1"))
        assert sum(n for _, _, n in fresh.reads) == 5, "the history was read instead"
    finally:
        fresh.close()
