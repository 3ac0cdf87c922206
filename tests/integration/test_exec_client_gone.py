"""Runs whose clients went away at once (their processes killed: no close frame, no ``complete``) are all
interrupted, even when the agent cannot take all their interrupts at once: it bounds the exec requests it handles
at once per kernel (``MAX_REQUESTS_PER_KERNEL``), and the gateway gave up on a refused one, so a burst of clients
gone at once (16 ``timeout 40 berth exec`` ending together) left all but the first few runs going in the kernel
until their session ended. Real gateway, NATS and PostgreSQL; the process backend's kernels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psutil

from services.agent import exec_server
from services.application.sessions import Sessions
from services.sdk.client import BerthClient
from tests.integration.test_exec import EXECUTE, backend, cluster, running_session, sessions  # noqa: F401
from tests.support.gateway import Keys, clean_streams, keys, read_models, served  # noqa: F401
from tests.support.publish import ServiceTasks
from tests.support.waiting import async_wait_for

RUNS = exec_server.MAX_REQUESTS_PER_KERNEL * 2
MARK = "7391"
"""The argument of the runs' ``sleep``, to find them among this test's processes."""


def sleeping_runs() -> list[psutil.Process]:
    """The runs' commands going on under this test process (the process backend's kernels)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.cmdline() == ["sleep", MARK]:
                found.append(child)
        except psutil.Error:
            pass
    return found


async def started_run(url: str, key: tuple[str, str], session_id: str) -> tuple[BerthClient, AsyncIterator[dict]]:
    """Starts a run that says so, then sleeps; returns its client and stream (kept: a stream dropped is completed
    towards the gateway) once the run said so."""
    client = BerthClient(url, *key)
    stream = client.subscribe(EXECUTE, {"id": session_id, "code": f"echo go; sleep {MARK}", "mode": "batch"})
    async with asyncio.timeout(30):
        assert (await stream.__anext__())["execute"]["data"] == "go\n"
    return client, stream


async def test_runs_whose_clients_went_at_once_are_all_interrupted(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions,
) -> None:
    async with BerthClient(served, *keys.alice) as alice:
        session_id = await running_session(alice, sessions)
        runs = [await started_run(served, keys.alice, session_id) for _ in range(RUNS)]
        await async_wait_for(lambda: len(sleeping_runs()) == RUNS, timeout=30, message="the runs did not start")
        for client, _ in runs:  # their processes killed together
            client._channel._ws.transport.abort()
        for client, _ in runs:
            await client.aclose()
        try:
            await async_wait_for(lambda: not sleeping_runs(), timeout=60)
        except AssertionError:
            raise AssertionError(f"{len(sleeping_runs())} of {RUNS} runs went on after their clients went") from None
    cluster.check()
