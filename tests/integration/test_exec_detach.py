"""``execute(detach: true)``: a shell command that runs on after its run (a service for ``berth app``), its
output going to the kernel's log; over real NATS and PostgreSQL, on the process backend's runner."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from services.application.sessions import Sessions
from services.sdk.client import BerthAPIError, BerthClient
from tests.integration.test_exec import LOGS, backend, cluster, running_session, sessions  # noqa: F401
from tests.support.gateway import TERMINATE, Keys, clean_streams, keys, read_models, served  # noqa: F401
from tests.support.publish import ServiceTasks
from tests.support.waiting import async_wait_for

DETACHED = """subscription($id: String!, $code: String!, $mode: String!, $stdin: String) {
  execute(sessionId: $id, code: $code, mode: $mode, stdin: $stdin, detach: true) { kind data exitCode } }"""


async def _run(client: BerthClient, variables: dict) -> list[dict]:
    items = []
    async with asyncio.timeout(30):
        async for data in client.subscribe(DETACHED, variables):
            items.append(data["execute"])
            if data["execute"]["kind"] == "done":
                break
    return items


async def test_a_detached_command_runs_on_after_its_run_and_writes_to_the_kernels_log(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions
) -> None:
    async with BerthClient(served, *keys.alice) as alice:
        session_id = await running_session(alice, sessions)
        items = await _run(alice, {"id": session_id, "mode": "batch",
                                   "code": "echo from-the-background; echo still-there >&2; exec sleep 300"})
        assert items[-1] == {"kind": "done", "data": None, "exitCode": 0}, "the run ends at once"
        said = "".join(i["data"] or "" for i in items if i["kind"] == "stdout")
        assert said.startswith("started in the background (pid ")

        async def logged() -> bool:
            log = (await alice.execute(LOGS, {"id": session_id}))["sessionLogs"] or ""
            return "from-the-background" in log and "still-there" in log

        await async_wait_for(logged, timeout=15, message="the detached command's output is not in the kernel's log")
        pid = int(re.search(r"pid (\d+)", said).group(1))  # type: ignore[union-attr]
        assert _alive(pid), "it runs on after its run"
        await alice.execute(TERMINATE, {"id": session_id})
        await async_wait_for(lambda: not _alive(pid), timeout=30, message="it outlived its session")
    cluster.check()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"  # a zombie has ended: only its exit status waits to be read


@pytest.mark.parametrize(("mode", "stdin"), [("query", None), ("batch", "input")])
async def test_detach_is_for_a_shell_command_reading_nothing(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions, mode: str, stdin: str | None
) -> None:
    async with BerthClient(served, *keys.alice) as alice:
        session_id = await running_session(alice, sessions)
        with pytest.raises(BerthAPIError) as refused:
            await _run(alice, {"id": session_id, "mode": mode, "code": "true", "stdin": stdin})
        assert refused.value.code == "BAD_INPUT" and "detach is for a shell command" in refused.value.message
    cluster.check()
