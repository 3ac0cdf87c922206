"""A wall clock for tests: aware UTC datetimes that move only when a test says."""

from __future__ import annotations

import datetime as dt

__all__ = ["UtcClock"]


class UtcClock:
    """Returns ``now`` when called; ``advance`` moves it."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)
