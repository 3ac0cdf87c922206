"""The exec path end to end in one process: gateway `execute` → agent exec server → process
backend's runner, over real NATS and PostgreSQL (relay, scheduler, controller and agent run as tasks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from contracts.status import SessionStatus
from services.agent.main import run_agent
from services.cli import admin_queries as aq
from services.gateway.execution import runs
from services.agent.backends.process import ProcessBackend
from services.sdk.client import BerthAPIError, BerthClient
from services.application.sessions import Sessions
from services.common.settings import Settings
from services.controller.main import run_controller
from services.relay.main import run_relay
from services.scheduler.main import run_scheduler
from tests.support.gateway import CREATE, TERMINATE, Keys, clean_streams, keys, read_models, served  # noqa: F401
from tests.support.publish import ServiceTasks, service_tasks
from tests.support.waiting import async_wait_for

EXECUTE = """subscription($id: String!, $code: String!, $mode: String!, $stdin: String, $argv: [String!]) {
  execute(sessionId: $id, code: $code, mode: $mode, stdin: $stdin, argv: $argv) {
    runId kind data exitCode durationMs truncated } }"""
ANNOUNCED = """subscription($id: String!, $code: String!) {
  execute(sessionId: $id, code: $code, mode: "query", announce: true) { runId kind data exitCode } }"""
INTERRUPT = "mutation($id: String!, $runId: String!) { interruptExecution(sessionId: $id, runId: $runId) }"
LOGS = "query($id: String!) { sessionLogs(sessionId: $id) }"


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[ProcessBackend]:
    backend = ProcessBackend(tmp_path, grace=2.0)
    yield backend
    for kernel_id in list(await backend.list_running()):
        await backend.destroy(kernel_id)
    await backend.close()


def cluster_settings(nats_url: str, pg_dsn: str) -> Settings:
    return Settings(nats_url=nats_url, pg_dsn=pg_dsn, agent_id="local", agent_capacity="cpu=4,mem=8g",
                    heartbeat_interval=0.2, heartbeat_timeout=5.0)


@pytest.fixture
async def cluster(served: str, nats_url: str, pg_dsn: str, backend: ProcessBackend) -> AsyncIterator[ServiceTasks]:
    settings = cluster_settings(nats_url, pg_dsn)
    async with service_tasks() as tasks:
        tasks.start("relay", lambda stop: run_relay(settings, stop))
        tasks.start("scheduler", lambda stop: run_scheduler(settings, stop))
        tasks.start("controller", lambda stop: run_controller(settings, stop))
        tasks.start("agent", lambda stop: run_agent(settings, stop, backend=backend))
        yield tasks


@pytest.fixture
def sessions(pg_dsn: str) -> Any:
    app = Sessions(pg_dsn)
    yield app
    app.close()


async def running_session(client: BerthClient, sessions: Sessions, cpu: str = "1") -> str:
    created = await client.execute(CREATE, {"input": {"resources": [{"slot": "cpu", "amount": cpu}]}})
    session_id = created["createSession"]["sessionId"]

    async def is_running() -> bool:
        state = await asyncio.to_thread(sessions.get, session_id)
        return state is not None and state.status is SessionStatus.RUNNING

    await async_wait_for(is_running, timeout=30, message=f"session {session_id} did not run")
    return session_id


async def execute(client: BerthClient, session_id: str, code: str, mode: str = "query", stdin: str | None = None,
                  argv: list[str] | None = None) -> list[dict]:
    items = []
    variables = {"id": session_id, "code": code, "mode": mode, "stdin": stdin, "argv": argv}
    async with asyncio.timeout(30):
        async for data in client.subscribe(EXECUTE, variables):
            items.append(data["execute"])
            if data["execute"]["kind"] == "done":
                break
    return items


def out(items: list[dict], kind: str = "stdout") -> str:
    return "".join(i["data"] for i in items if i["kind"] == kind)


async def test_execute_streams_output_keeps_the_namespace_and_records_each_run(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions
) -> None:
    async with BerthClient(served, *keys.alice) as alice:
        session_id = await running_session(alice, sessions)
        first = await execute(alice, session_id, "x = 41")
        assert [i["kind"] for i in first] == ["done"] and first[0]["exitCode"] == 0
        second = await execute(alice, session_id, "print(x + 1)")
        assert out(second) == "42\n"
        assert second[-1]["exitCode"] == 0 and second[-1]["truncated"] is False
        assert len({i["runId"] for i in second}) == 1
        failed = await execute(alice, session_id, "raise SystemExit(3)")
        assert failed[-1]["exitCode"] == 3
        batch = await execute(alice, session_id, "tr a-z A-Z; echo e >&2", mode="batch", stdin="hi\n")
        assert (out(batch), out(batch, "stderr"), batch[-1]["exitCode"]) == ("HI\n", "e\n", 0)

    async def recorded() -> list[Any]:
        events = await asyncio.to_thread(sessions.load, session_id)
        return [e for e in events if type(e).type_name() == "session.execution_finished"]

    runs = await async_wait_for(lambda: _at_least(recorded, 4), timeout=10)
    assert [(e.mode, e.exit_code) for e in runs] == [("query", 0), ("query", 0), ("query", 3), ("batch", 0)]
    assert runs[1].run_id == second[0]["runId"] and runs[1].metadata.actor == keys.alice[0]
    assert runs[1].kernel_id == f"{session_id}-k0" and runs[1].code_digest.startswith("sha256:")
    cluster.check()


ARGPARSE = """import argparse, sys
parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=1)
print(sys.argv, parser.parse_args().epochs)
"""


async def test_a_run_has_the_argv_it_is_given_and_argparse_reads_it(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions
) -> None:
    """`berth run train.py --epochs 3`: the script sees sys.argv as `python train.py --epochs 3` gives it; with
    none given, a script's argparse reads no option of the worker's own (it failed on --control-fd before)."""
    async with BerthClient(served, *keys.alice) as alice:
        session_id = await running_session(alice, sessions)
        plain = await execute(alice, session_id, ARGPARSE)
        assert (out(plain), out(plain, "stderr"), plain[-1]["exitCode"]) == ("[''] 1\n", "", 0)
        given = await execute(alice, session_id, ARGPARSE, argv=["train.py", "--epochs", "3"])
        assert (out(given), given[-1]["exitCode"]) == ("['train.py', '--epochs', '3'] 3\n", 0)
        kept = await execute(alice, session_id, "import sys; print(sys.argv)")
        assert out(kept) == "['train.py', '--epochs', '3']\n"  # the namespace's, as a variable stays
        with pytest.raises(BerthAPIError) as err:
            await execute(alice, session_id, "echo", mode="batch", argv=["x"])
        assert err.value.code == "BAD_INPUT" and "argv is for Python" in err.value.message
    cluster.check()


async def test_a_run_writing_more_than_a_mebibyte_reaches_its_client_whole(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions
) -> None:
    """A training script's log streams for hours: a run's output past 1 MiB is paced, not cut (it was
    dropped past 1 MiB, and the client was told only at the run's end)."""
    async with BerthClient(served, *keys.alice) as alice:
        session_id = await running_session(alice, sessions)
        code = "import sys\nfor i in range(3):\n    sys.stdout.write(str(i) * (1 << 20))"
        items = await execute(alice, session_id, code)
        assert out(items) == "0" * (1 << 20) + "1" * (1 << 20) + "2" * (1 << 20)
        assert items[-1]["exitCode"] == 0 and items[-1]["truncated"] is False
    cluster.check()


async def _at_least(fetch: Any, count: int) -> list[Any]:
    found = await fetch()
    return found if len(found) >= count else []


async def test_a_client_that_goes_away_interrupts_its_run(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions
) -> None:
    async with BerthClient(served, *keys.alice) as alice:
        session_id = await running_session(alice, sessions)
        stream = alice.subscribe(EXECUTE, {"id": session_id, "code": "print('go', flush=True)\nwhile True:\n    pass\n",
                                           "mode": "query", "stdin": None})
        async with asyncio.timeout(30):
            first = await stream.__anext__()
        assert first["execute"]["data"].startswith("go")
        await stream.aclose()
        after = await execute(alice, session_id, "print('free')")  # would wait forever behind the loop
        assert out(after) == "free\n"


async def _silent_run(client: BerthClient, session_id: str) -> asyncio.Future[Any]:
    """Starts a run that prints once, then sleeps 30 s in silence; returns, once its first line came, the
    wait for its next item."""
    stream = client.subscribe(EXECUTE, {"id": session_id, "code": "import time\nprint('go', flush=True)\n"
                                        "time.sleep(30)\n", "mode": "query", "stdin": None})
    assert (await stream.__anext__())["execute"]["data"].startswith("go")
    return asyncio.ensure_future(stream.__anext__())


async def test_a_run_whose_agent_restarted_ends_with_an_error_not_a_wait_for_good(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions, backend: ProcessBackend, nats_url: str,
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The agent process restarted during a run (a crash, an upgrade): the new one cannot take the run's stream
    up again. The client waited for its `done` for good (found with `berth exec` and a SIGKILLed agent)."""
    monkeypatch.setattr(runs, "SILENCE", 0.5)
    async with BerthClient(served, *keys.alice) as alice:
        session_id = await running_session(alice, sessions)
        async with asyncio.timeout(30):
            quiet = await _silent_run(alice, session_id)
            await asyncio.sleep(1.5)  # silent past SILENCE while the agent streams it: still waited for
            assert not quiet.done()
            await cluster.stop("agent")
            cluster.start("agent", lambda stop: run_agent(cluster_settings(nats_url, pg_dsn), stop, backend=backend))
            with pytest.raises(BerthAPIError) as lost:
                await quiet
        assert lost.value.code == "UNAVAILABLE" and "the run was lost" in lost.value.message
    cluster.check()


async def test_a_run_whose_agent_is_away_ends_with_its_session(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An agent that does not answer may come back, so its run is waited on; not past its session's end."""
    monkeypatch.setattr(runs, "SILENCE", 0.5)
    async with BerthClient(served, *keys.alice) as alice:
        session_id = await running_session(alice, sessions)
        async with asyncio.timeout(30):
            quiet = await _silent_run(alice, session_id)
            await cluster.stop("agent")
            await asyncio.sleep(1.5)  # probes unanswered: the session is still RUNNING, so it is waited on
            assert not quiet.done()
            await alice.execute(TERMINATE, {"id": session_id})
            with pytest.raises(BerthAPIError) as ended:
                await quiet
        assert ended.value.code == "CONFLICT" and f"session {session_id} is TERMINATING" in ended.value.message


async def test_an_interrupted_run_goes_on_to_its_keyboard_interrupt_and_keeps_the_namespace(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions
) -> None:
    async with BerthClient(served, *keys.alice) as alice, BerthClient(served, *keys.bob) as bob:
        session_id = await running_session(alice, sessions)
        await execute(alice, session_id, "x = 41")
        stream = alice.subscribe(ANNOUNCED, {"id": session_id, "code": "import time\ntime.sleep(600)\n"})
        items: list[dict] = []
        async with asyncio.timeout(30):
            started = (await stream.__anext__())["execute"]
            assert started["kind"] == "started" and started["data"] is None, "announced before any output"
            run_id = started["runId"]

            with pytest.raises(BerthAPIError) as err:
                await bob.execute(INTERRUPT, {"id": session_id, "runId": run_id})
            assert err.value.code == "NOT_FOUND", "only the session's owner interrupts its runs"
            with pytest.raises(BerthAPIError) as err:
                await alice.execute(INTERRUPT, {"id": session_id, "runId": "not-a-run"})
            assert err.value.code == "BAD_INPUT"
            unknown = await alice.execute(INTERRUPT, {"id": session_id, "runId": "0" * 32})
            assert unknown["interruptExecution"] is False

            assert (await alice.execute(INTERRUPT, {"id": session_id, "runId": run_id}))["interruptExecution"] is True
            async for data in stream:
                items.append(data["execute"])
                if data["execute"]["kind"] == "done":
                    break
        assert "KeyboardInterrupt" in out(items, "stderr") and items[-1]["exitCode"] == 130
        assert {i["runId"] for i in items} == {run_id}
        assert (await alice.execute(INTERRUPT, {"id": session_id, "runId": run_id}))["interruptExecution"] is False
        assert out(await execute(alice, session_id, "print(x + 1)")) == "42\n", "the namespace is kept"


async def test_an_execution_longer_than_the_idle_timeout_is_not_idleness(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions
) -> None:
    """A session whose keypair allows 4 s without an execution runs one of 9 s to its end (its agent's
    heartbeat says the kernel is busy); idle after it, the session ends with idle-timeout."""
    async with BerthClient(served, *keys.admin) as admin, BerthClient(served, *keys.alice) as alice:
        await admin.execute(aq.CREATE_POLICY, {"i": {"name": "brief", "idleTimeout": 4}})
        await admin.execute(aq.SET_KEYPAIR_POLICY, {"k": keys.alice[0], "p": "brief"})
        session_id = await running_session(alice, sessions)
        items = []
        async with asyncio.timeout(60):
            code = "import time\nfor i in range(3):\n    time.sleep(3)\n    print(i, flush=True)\n"
            variables = {"id": session_id, "code": code, "mode": "query", "stdin": None}
            async for data in alice.subscribe(EXECUTE, variables):
                items.append(data["execute"])
                if data["execute"]["kind"] == "done":
                    break
        assert (out(items), items[-1]["exitCode"]) == ("0\n1\n2\n", 0), out(items, "stderr")
        state = await asyncio.to_thread(sessions.get, session_id)
        assert state is not None and state.status is SessionStatus.RUNNING

        async def ended() -> Any:
            now = await asyncio.to_thread(sessions.get, session_id)
            return now is not None and now.status is SessionStatus.TERMINATED and now

        await async_wait_for(ended, timeout=60, message="the idle session was not terminated")
        changes = [e for e in await asyncio.to_thread(sessions.load, session_id)
                   if type(e).type_name() == "session.status_changed"]
        assert "idle-timeout" in {e.reason.value for e in changes}


async def test_session_logs_return_the_runner_log(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions
) -> None:
    async with BerthClient(served, *keys.alice) as alice:
        session_id = await running_session(alice, sessions)
        logs = (await alice.execute(LOGS, {"id": session_id}))["sessionLogs"]
        assert "berth runner" in logs and "listening" in logs


async def test_execution_is_refused_clearly(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions
) -> None:
    async with BerthClient(served, *keys.alice) as alice, BerthClient(served, *keys.bob) as bob:
        session_id = await running_session(alice, sessions)
        with pytest.raises(BerthAPIError) as err:
            await execute(bob, session_id, "print(1)")
        assert err.value.code == "NOT_FOUND"
        with pytest.raises(BerthAPIError) as err:
            await execute(alice, session_id, "print(1)", mode="turbo")
        assert err.value.code == "BAD_INPUT"
        with pytest.raises(BerthAPIError) as err:
            await bob.execute(LOGS, {"id": session_id})
        assert err.value.code == "NOT_FOUND"
        pending = (await alice.execute(CREATE, {"input": {"resources": [{"slot": "cpu", "amount": "64"}]}}))
        with pytest.raises(BerthAPIError) as err:
            await execute(alice, pending["createSession"]["sessionId"], "print(1)")
        assert err.value.code == "CONFLICT" and "not RUNNING" in err.value.message
        pending_id = pending["createSession"]["sessionId"]
        with pytest.raises(BerthAPIError) as err:
            await alice.execute(LOGS, {"id": pending_id})
        assert (err.value.code, err.value.message) == ("CONFLICT", f"session {pending_id} is PENDING: its main kernel "
                                                       "is not placed on an agent yet, so it has no log (nor anything "
                                                       "to run in) until it is")
        await cluster.stop("agent")
        with pytest.raises(BerthAPIError) as err:
            await execute(alice, session_id, "print(1)")
        assert err.value.code == "UNAVAILABLE"
