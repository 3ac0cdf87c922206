"""The agent's own bounds on how fast runs' output is read from their kernels' runners: per run, per kernel,
per agent.

The runner paces each run's output (``runner/berth_output.py``: 1 MiB/s after a first MiB), but the runner
is the kernel's: a custom image or the user's code can replace it, and a replaced one writes as fast as it
likes. ``OutputRate`` keeps the same books on the agent's side: the stream of a run that outruns it stops
reading the runner's socket until the allowance is paid back, so the socket's buffers fill and the runner's
writes wait (backpressure), instead of the agent publishing hundreds of MB/s to the bus.

One run's rate was not enough: a kernel streams up to 16 runs at once and an agent 128, so 32 ``yes`` of one
tenant in two sessions sent 32 MiB/s, all of it to the gateway's one NATS connection, which could not read it
that fast: nats-server cut that connection (``MaxPending`` exceeded) every few seconds, failing every tenant's
requests and streams at that moment, and until then every request's answer waited behind seconds of queued
output. ``OutputBudgets`` charges each run's reads to its kernel's share (``KERNEL_RATE``) and its agent's
(``AGENT_RATE``) too: the kernel's runs share its rate, the agent's kernels its, and what the bus carries from
one agent stays within what one gateway passes on.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable

__all__ = ["AGENT_BURST", "AGENT_RATE", "BURST", "KERNEL_BURST", "KERNEL_RATE", "RATE", "OutputBudgets", "OutputRate",
           "RunBudget"]

RATE = 1 << 20
"""Characters of output per second the agent reads of a run, as its runner sends bytes (a character is one to
four bytes: a runner that keeps its rate is never held back)."""
BURST = 1 << 20
"""Characters a run may send at once before the rate applies (the runner's first burst)."""
KERNEL_RATE = 2 << 20
"""Characters of output per second the agent reads of all the runs of one kernel together: two runs at the
runner's rate; more runs share it."""
KERNEL_BURST = 2 << 20
"""Characters the runs of one kernel may send at once before ``KERNEL_RATE`` applies."""
AGENT_RATE = 8 << 20
"""Characters of output per second the agent reads of all its runs together (four kernels at their rate)."""
AGENT_BURST = 8 << 20
"""Characters the runs of the agent may send at once before ``AGENT_RATE`` applies."""


class OutputRate:
    """A token bucket: ``burst`` (``BURST``) units at once, then ``rate`` (``RATE``) per second, on ``clock``.
    Shared by several readers, it holds them all to ``rate`` together: each waits until what was taken
    before it, its own included, is paid back."""

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


class RunBudget:
    """The buckets one run's reads are charged to (its own, its kernel's, its agent's); a read waits for the
    one furthest behind."""

    def __init__(self, *rates: OutputRate) -> None:
        if not rates:
            raise ValueError("a run's budget needs at least one rate")
        self._rates = rates

    def take(self, size: int) -> float:
        """Counts ``size`` units just read in every bucket; returns the seconds to wait before reading more."""
        return max(rate.take(size) for rate in self._rates)


class OutputBudgets:
    """The output budgets of one agent's runs: ``for_run(kernel_id)`` gives a run its own rate, charged also to
    its kernel's (shared by the kernel's runs streaming now, dropped with the last of them) and the agent's."""

    def __init__(self, kernel: tuple[float, float] | None = None, agent: tuple[float, float] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``kernel``, ``agent``: each a rate and its burst (default ``KERNEL_RATE``, ``KERNEL_BURST``;
        ``AGENT_RATE``, ``AGENT_BURST``)."""
        self._kernel = (KERNEL_RATE, KERNEL_BURST) if kernel is None else kernel
        self._clock = clock
        self._agent = OutputRate(*((AGENT_RATE, AGENT_BURST) if agent is None else agent), clock=clock)
        self._kernels: weakref.WeakValueDictionary[str, OutputRate] = weakref.WeakValueDictionary()

    def for_run(self, kernel_id: str, run: OutputRate | None = None) -> RunBudget:
        """Returns the budget of a new run of ``kernel_id`` (its own rate ``run``, default ``OutputRate()``)."""
        kernel = self._kernels.get(kernel_id)
        if kernel is None:
            kernel = self._kernels[kernel_id] = OutputRate(*self._kernel, clock=self._clock)
        return RunBudget(run or OutputRate(clock=self._clock), kernel, self._agent)
