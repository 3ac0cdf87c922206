"""The agent's own bound on how fast a run's output is read from its kernel's runner.

The runner paces each run's output (``runner/berth_output.py``: 1 MiB/s after a first MiB), but the runner
is the kernel's: a custom image or the user's code can replace it, and a replaced one writes as fast as it
likes. ``OutputRate`` keeps the same books on the agent's side: the stream of a run that outruns it stops
reading the runner's socket until the allowance is paid back, so the socket's buffers fill and the runner's
writes wait (backpressure), instead of the agent publishing hundreds of MB/s to the bus.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["BURST", "RATE", "OutputRate"]

RATE = 1 << 20
"""Characters of output per second the agent reads of a run, as its runner sends bytes (a character is one to
four bytes: a runner that keeps its rate is never held back)."""
BURST = 1 << 20
"""Characters a run may send at once before the rate applies (the runner's first burst)."""


class OutputRate:
    """A token bucket: ``burst`` (``BURST``) units at once, then ``rate`` (``RATE``) per second, on ``clock``."""

    def __init__(self, rate: float | None = None, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        rate = RATE if rate is None else rate
        burst = BURST if burst is None else burst
        if rate <= 0 or burst <= 0:
            raise ValueError(f"the rate and the burst must be positive, got {rate} and {burst}")
        self._rate = float(rate)
        self._burst = float(burst)
        self._clock = clock
        self._allowance = float(burst)
        self._checked = clock()

    def take(self, size: int) -> float:
        """Counts ``size`` units just read; returns the seconds to wait before reading more (0.0: none)."""
        now = self._clock()
        self._allowance = min(self._burst, self._allowance + (now - self._checked) * self._rate)
        self._checked = now
        self._allowance -= size
        return 0.0 if self._allowance >= 0 else -self._allowance / self._rate
