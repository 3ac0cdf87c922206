"""``berth session rm`` (``berth rm``) exits 1 when a session has not ended within ``--timeout``, as
``session create`` does when one has not started: it printed the id and exited 0, so
``berth rm X && <use X's slots>`` went on while X still held them."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import pytest
from click.testing import CliRunner

from services.cli import session_cmd
from services.cli.main import _register, cli

SESSION = "5e7a70680d5f57d796ef12dcb734a286"


class StuckTermination:
    """A gateway whose session accepts its termination but then stays TERMINATING (an agent that
    does not answer), or, with ``ends``, reaches TERMINATED."""

    def __init__(self, ends: bool) -> None:
        self.ends = ends

    async def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"session": {"id": SESSION, "status": "RUNNING", "kernels": []}}

    async def execute_while_unavailable(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        return {"terminateSession": {"sessionId": SESSION}}

    async def subscribe(self, query: str, variables: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        yield {"sessionStatus": {"position": 7, "status": "TERMINATING", "occurredAt": "t1"}}
        if self.ends:
            yield {"sessionStatus": {"position": 8, "status": "TERMINATED", "occurredAt": "t2"}}
        await asyncio.Event().wait()  # nothing more happens


@pytest.mark.parametrize("ends", [False, True])
def test_rm_exits_1_when_a_session_has_not_ended_within_the_timeout(ends: bool,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _register()
    monkeypatch.setattr(session_cmd, "connect_client", lambda: StuckTermination(ends))
    result = CliRunner().invoke(cli, ["rm", "--timeout", "0.3", SESSION])
    assert SESSION in result.stdout  # the termination was requested: its id is printed either way
    if ends:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 1, result.output
        assert f"not ended within 0.3s: {SESSION} (TERMINATING); the termination stays requested" in result.output
        # the timeout as given (follow_status said "after 0s" for one under a second)
        assert f"session {SESSION} is still TERMINATING after 0.3s;" in result.output
