"""Deadline-based waiting for tests: poll a condition until it holds, never sleep blindly."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
             message: str = "") -> T:
    """Polls ``predicate`` until it returns a truthy value and returns that value; raises
    AssertionError with ``message`` when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(message or f"condition not met within {timeout} s: {predicate!r}")
        time.sleep(interval)


async def async_wait_for(predicate: Callable[[], Awaitable[T] | T], timeout: float = 10.0,
                         interval: float = 0.02, message: str = "") -> T:
    """Polls ``predicate`` (a coroutine function or a plain callable) until it yields a truthy
    value and returns that value; raises AssertionError with ``message`` when ``timeout``
    seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        result: Any = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(message or f"condition not met within {timeout} s: {predicate!r}")
        await asyncio.sleep(interval)
