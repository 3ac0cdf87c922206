"""The cyclic garbage collector, set for a long-running service.

CPython's defaults (a young collection every 700 net allocations of tracked objects, the older
generations every 10 of the younger) are made for short scripts. A service decoding and building
thousands of events, rows and GraphQL results a second ran a collection every few milliseconds: under
``bench_api`` (16 clients, 800 sessions) the collector took 9–16 % of each service's CPU (gateway
1.5 s of 11 s, projector 1.1 of 6.6, controller 0.85 of 9.3; measured with ``gc.callbacks``), and a
full collection of the gateway's heap took 130 ms, on whichever request it fell. Almost everything
those allocations build dies by reference counting, not by the collector; collecting less often
frees the same cycles, later. What the process built at start (modules, classes, settings) is never
garbage: ``gc.freeze`` leaves it out of every later collection.
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "tune_gc"]

THRESHOLDS = (20_000, 10, 10)
"""Net allocations of tracked objects between young collections; then as CPython: each older
generation every 10 collections of the younger one (cyclic garbage is held at most that long)."""


def tune_gc() -> None:
    """Moves everything alive now out of the collector's reach (``gc.freeze``) and sets ``THRESHOLDS``;
    for a service's start, after its imports."""
    gc.collect()  # garbage of the imports is freed now, not frozen
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
