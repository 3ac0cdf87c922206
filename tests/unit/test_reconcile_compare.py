"""Agent reconciliation: the pure ``compare`` of assigned kernels and running containers, and the periodic passes."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.agent import reconcile
from services.agent.reconcile import Corrections, compare, reconcile_periodically

CASES = [
    pytest.param({}, set(), {}, Corrections(), id="nothing"),
    pytest.param({"k1": "s1"}, {"k1"}, {"k1": "c1"}, Corrections(), id="all-agree"),
    pytest.param({}, set(), {"k9": "c9"}, Corrections(orphans=[("k9", "c9")]), id="unassigned-container-is-orphan"),
    pytest.param({"k1": "s1"}, {"k1"}, {}, Corrections(vanished=[("k1", "s1")]), id="expected-without-container"),
    pytest.param({"k1": "s1"}, set(), {"k1": "c1"}, Corrections(adopted=["k1"]), id="found-running-is-adopted"),
    pytest.param({"k1": "s1"}, set(), {}, Corrections(suspects=["k1"]), id="assigned-not-started-is-suspect"),
    pytest.param({}, {"k1"}, {}, Corrections(), id="expected-but-no-longer-assigned"),
    pytest.param({"k2": "s2", "k1": "s1"}, {"k1", "k2"}, {"k3": "c3", "k0": "c0"},
                 Corrections(orphans=[("k0", "c0"), ("k3", "c3")], vanished=[("k1", "s1"), ("k2", "s2")]),
                 id="sorted-by-kernel"),
]


@pytest.mark.parametrize(("assigned", "expected", "running", "corrections"), CASES)
def test_compare(assigned: dict[str, str], expected: set[str], running: dict[str, str],
                 corrections: Corrections) -> None:
    assert compare(assigned, expected, running) == corrections


KERNELS = st.sampled_from([f"k{i}" for i in range(8)])


@given(assigned=st.dictionaries(KERNELS, st.just("s")), expected=st.sets(KERNELS),
       running=st.dictionaries(KERNELS, st.just("c")))
def test_every_kernel_is_accounted_for_once(assigned: dict[str, str], expected: set[str],
                                            running: dict[str, str]) -> None:
    found = compare(assigned, expected, running)
    orphans = {k for k, _ in found.orphans}
    vanished = {k for k, _ in found.vanished}
    assert orphans == set(running) - set(assigned)  # only unassigned containers are destroyed
    assert vanished == (expected & set(assigned)) - set(running)  # only what should run and does not
    assert set(found.adopted) == (set(assigned) & set(running)) - expected
    assert set(found.suspects) == set(assigned) - set(running) - expected
    assert not vanished & set(found.suspects) and not orphans & set(assigned)


async def test_every_pass_is_followed_by_a_sweep_of_what_ended_kernels_left() -> None:
    """The periodic reconciliation also removes what ended kernels left past the retention, and a failed pass
    (the engine away) leaves the loop running."""
    stop = asyncio.Event()

    class Passes:
        def __init__(self) -> None:
            self.calls: list[str] = []

        async def once(self) -> Corrections:
            self.calls.append("once")
            if len(self.calls) == 1:
                raise OSError("the engine is away")
            return Corrections()

        async def sweep(self) -> list[str]:
            self.calls.append("sweep")
            if self.calls.count("sweep") == 2:
                stop.set()
            return ["k1"]

    passes = Passes()
    await asyncio.wait_for(reconcile_periodically(passes, 0.01, stop), timeout=30)  # type: ignore[arg-type]
    assert passes.calls == ["once", "once", "sweep", "once", "sweep"]


async def test_suspects_are_judged_soon_not_a_whole_interval_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a restart, kernels assigned here and found neither running nor known started are judged at the
    next pass: that pass comes ``SUSPECTS_AGAIN`` later, where it came an interval (60 s) later (the process
    backend's sessions looked RUNNING that long after `berth up` started again)."""
    monkeypatch.setattr(reconcile, "SUSPECTS_AGAIN", 0.01)
    stop = asyncio.Event()
    found = [Corrections(suspects=["k1"]), Corrections(vanished=[("k1", "s1")])]

    class Passes:
        async def once(self) -> Corrections:
            if len(found) == 1:
                stop.set()
            return found.pop(0)

        async def sweep(self) -> list[str]:
            return []

    await asyncio.wait_for(reconcile_periodically(Passes(), 3600, stop), timeout=30)  # type: ignore[arg-type]
    assert found == []
