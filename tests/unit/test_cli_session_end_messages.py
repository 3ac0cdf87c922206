"""What the CLI says when a session ends under it or is kept: ``berth logs -f`` ends saying the session
ended and how (it ended in silence, exit 0, as if the log had merely gone quiet), and ``berth run -n NAME``
names the kept session by NAME in its hints (it gave the 32-digit id the user never typed); a run cut short by
its session's end says so (and ``run`` no longer calls the session kept); Ctrl-C while ``session create`` waits
says the session stays requested."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any, AsyncIterator

import pytest
from click.testing import CliRunner

from services.cli import queries as q
from services.cli import exec_cmd, run_cmd, session_cmd
from services.cli.logs_follow import follow_logs
from services.cli.main import _register, cli

SESSION = "5e7a70680d5f57d796ef12dcb734a286"


class EndingSession:
    """A gateway whose session runs for ``polls`` polls of its log, then has ended with ``ended``."""

    def __init__(self, polls: int, ended: dict[str, Any], kernels: list[dict[str, Any]]) -> None:
        self.polls, self.ended, self.kernels, self.seen = polls, ended, kernels, 0

    async def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        if query == q.SESSION_LOGS:
            return {"sessionLogs": "line 1\n" * min(self.seen, 2)}
        self.seen += 1
        status = {"status": "RUNNING"} if self.seen <= self.polls else self.ended
        return {"session": {"id": SESSION, "name": "train", "kernels": self.kernels, "statusReason": None,
                            "statusDetail": None, "pendingReason": None, **status}}


def _follow(client: EndingSession) -> tuple[str, list[str]]:
    written: list[str] = []
    warned: list[str] = []
    asyncio.run(follow_logs(client, "train", written.append, warned.append, poll=0))  # type: ignore[arg-type]
    return "".join(written), warned


def test_logs_follow_says_the_session_ended_with_its_status_reason_and_exit_code() -> None:
    main = {"clusterRole": "main", "exitCode": 3}
    ended = {"status": "TERMINATED", "statusReason": "task-failed"}
    text, warned = _follow(EndingSession(2, ended, [{"clusterRole": "sub", "exitCode": 0}, main]))
    assert text == "line 1\nline 1\n"  # the whole log first, as before
    assert warned == ["berth: session train ended: TERMINATED (task-failed), exit code 3"]


def test_logs_follow_of_a_session_that_never_ran_names_why_it_ended() -> None:
    ended = {"status": "ERROR", "statusReason": "failed-to-start", "statusDetail": "image 'x' not found"}
    _, warned = _follow(EndingSession(0, ended, []))
    assert warned == ["berth: session train ended: ERROR (failed-to-start): image 'x' not found"]


class KeptSession:
    """A gateway that starts the session at once; the program exits 0."""

    async def create_session(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"sessionId": SESSION, "position": 3}

    async def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"session": {"id": SESSION, "status": "RUNNING", "kernels": []}}

    async def subscribe(self, query: str, variables: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        yield {"sessionStatus": {"position": 7, "status": "RUNNING", "occurredAt": "t1"}}

    async def __aenter__(self) -> "KeptSession":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize("name", ["train", None])
def test_run_names_the_kept_session_as_the_user_did(name: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    async def program_ran(*args: Any, **kwargs: Any) -> int:
        return 0

    _register()
    monkeypatch.setattr(run_cmd, "connect_client", KeptSession)
    monkeypatch.setattr(run_cmd, "stream_execution", program_ran)
    result = CliRunner().invoke(cli, ["run", *(["-n", name] if name else []), "-c", "print(1)"])
    assert result.exit_code == 0, result.output
    ref = name or SESSION
    assert f"session {ref} kept: `berth exec {ref} CODE`, `berth session rm {ref}`" in result.output


class EndedUnderTheRun(KeptSession):
    """A gateway whose session is ended (``berth rm`` from elsewhere) while the program runs: the run's
    worker is killed (exit 137) and the session is TERMINATING by the time the stream ends."""

    async def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        status = "TERMINATING" if query == q.SESSION_BRIEF else "RUNNING"
        return {"session": {"id": SESSION, "name": "train", "status": status, "statusReason": "user-requested",
                            "statusDetail": None, "pendingReason": None, "kernels": []}}

    async def subscribe(self, query: str, variables: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        if query == q.EXECUTE:
            yield {"execute": {"runId": "r1", "kind": "stdout", "data": "0\n"}}
            yield {"execute": {"runId": "r1", "kind": "done", "exitCode": 137}}
        else:
            yield {"sessionStatus": {"position": 7, "status": "RUNNING", "occurredAt": "t1"}}


@pytest.mark.parametrize("command", [["run", "-n", "train", "-c", "work()"], ["exec", "train", "work()"]])
def test_a_run_cut_short_by_the_sessions_end_says_so_and_run_does_not_call_it_kept(
        command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _register()
    monkeypatch.setattr(run_cmd, "connect_client", EndedUnderTheRun)
    monkeypatch.setattr(exec_cmd, "connect_client", EndedUnderTheRun)
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 137, result.output
    assert "berth: session train ended under the run: TERMINATING (user-requested)" in result.output
    assert "kept" not in result.output and "berth exec train" not in result.output, result.output


class NeverPlaced(KeptSession):
    """A gateway whose session stays PENDING; the user presses Ctrl-C while `session create` waits."""

    async def subscribe(self, query: str, variables: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        yield {"sessionStatus": {"position": 7, "status": "PENDING", "occurredAt": "t1"}}
        os.kill(os.getpid(), signal.SIGINT)  # asyncio.run's handler cancels the command's task
        await asyncio.Event().wait()


def test_ctrl_c_while_session_create_waits_says_the_session_stays_requested(monkeypatch: pytest.MonkeyPatch) -> None:
    """It said only "Aborted!": the session went on waiting for room, unseen, holding a pending slot."""
    _register()
    monkeypatch.setattr(session_cmd, "connect_client", NeverPlaced)
    result = CliRunner().invoke(cli, ["session", "create", "-n", "train"])
    assert result.exit_code == 1, result.output
    assert (f"session {SESSION} stays requested (Ctrl-C stopped the waiting only): `berth session rm {SESSION}` "
            "cancels it") in result.output
