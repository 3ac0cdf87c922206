"""``berth exec``'s output under a stdout that does not take it (a pager waiting): the event loop goes on
(the websocket is read and the gateway's pings answered) while a thread waits to write. A subscription
stands in for the gateway; stdout is a real pipe nobody reads until the test says so."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.cli import exec_cmd
from tests.support.waiting import wait_for

CHUNK = "y" * (16 << 10)
CHUNKS = 64  # 1 MiB: far more than a pipe holds (64 KiB)


class Gateway:
    """Yields a run's items as the gateway's subscription would, counting what was taken."""

    def __init__(self) -> None:
        self.taken = 0

    async def subscribe(self, query: str, variables: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        yield {"execute": {"runId": "r", "kind": "started"}}
        for _ in range(CHUNKS):
            self.taken += 1
            yield {"execute": {"runId": "r", "kind": "stdout", "data": CHUNK}}
        self.taken += 1
        yield {"execute": {"runId": "r", "kind": "done", "exitCode": 3, "truncated": False}}


def test_a_stdout_that_does_not_read_blocks_a_thread_not_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    read_end, write_end = os.pipe()
    stdout = io.TextIOWrapper(os.fdopen(write_end, "wb"), encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", stdout)
    gateway = Gateway()
    result: list[int] = []
    streaming = threading.Thread(target=lambda: result.append(asyncio.run(
        exec_cmd.stream_execution(gateway, "s", "code", "query"))), daemon=True)  # type: ignore[arg-type]
    streaming.start()
    received = bytearray()
    try:
        wait_for(lambda: gateway.taken == CHUNKS + 1, timeout=20,
                 message="the stream stopped while stdout was full: the event loop waited for it")
    finally:
        with os.fdopen(read_end, "rb") as reader:
            draining = threading.Thread(target=lambda: received.extend(reader.read()), daemon=True)
            draining.start()
            streaming.join(timeout=30)
            stdout.close()
            draining.join(timeout=30)
    assert result == [3]
    assert received.decode() == CHUNK * CHUNKS
