"""Commands that did nothing, silently: ``berth admin policy update NAME`` and ``berth admin rgroup update NAME``
with no option to change are a usage error, as ``admin project update`` and ``admin domain update`` give (an update
of nothing printed the unchanged object and exited 0); ``berth events -f NAME`` of a misspelt NAME is an error, as
without ``-f`` (it followed nothing for ever); and Ctrl-C ends ``berth events -f`` quietly with 130, as it ends
``berth logs -f``."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from click.testing import CliRunner

from services.cli import admin_common
from services.cli.main import _register, cli


class Unreachable:
    """A gateway the command must not call."""

    def __init__(self) -> None:
        raise AssertionError("the command asked the gateway for an update of nothing")


@pytest.mark.parametrize("command", [["policy", "update", "small"], ["rgroup", "update", "gpu"],
                                     ["rgroup", "update", "gpu", "--description", "create only"]])
def test_an_update_of_nothing_is_a_usage_error(command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _register()
    monkeypatch.setattr(admin_common, "connect_client", Unreachable)
    result = CliRunner().invoke(cli, ["admin", *command])
    assert result.exit_code == 2, result.output
    assert "nothing to update: give at least one" in result.output


class Recording:
    """A gateway that takes any update and shows the object."""

    sent: list[dict[str, Any]] = []

    async def execute(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        if "mutation" in query:
            Recording.sent.append(variables["i"])
            return {"result": {"position": 1}}
        return {"resourcePolicies": [{"name": "small"}], "resourceGroups": [{"name": "gpu"}]}

    async def __aenter__(self) -> "Recording":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize(("command", "field"), [
    (["policy", "update", "small", "--total-slots", ""], "totalResourceSlots"),
    (["rgroup", "update", "gpu", "--private"], "public")])
def test_an_update_of_one_option_is_sent(command: list[str], field: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _register()
    monkeypatch.setattr(admin_common, "connect_client", Recording)
    result = CliRunner().invoke(cli, ["admin", *command])
    assert result.exit_code == 0, result.output
    assert Recording.sent[-1][field] in ([], False)  # "" = unlimited: a change, not nothing


class NoHistory:
    """A gateway that knows nothing by the name asked for; fails a follow that polls on regardless."""

    polls = 0

    async def execute(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        if "events(" not in query:
            return {"session": None}
        NoHistory.polls += 1
        if NoHistory.polls > 20:
            raise AssertionError("followed the history of an unknown aggregate, printing nothing")
        return {"events": []}


@pytest.mark.parametrize("last", ["100", "0"])
def test_following_a_misspelt_aggregate_is_an_error(last: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """As without -f (README: "an AGGREGATE nothing is known as (a misspelt name) is an error"); it followed it for
    ever, printing nothing."""
    from services.cli import events_cmd

    _register()
    NoHistory.polls = 0
    monkeypatch.setattr(events_cmd, "connect_client", NoHistory)
    result = CliRunner().invoke(cli, ["events", "-f", "--poll", "0", "-n", last, "trian"])
    assert result.exit_code == 1, result.output
    assert "no session, agent or keypair 'trian'" in result.output


class QuietHistory:
    """A gateway with one event, then none; the user presses Ctrl-C while `events -f` follows."""

    async def execute(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        if "events(" not in query:
            return {"session": None}
        if variables.get("after") is None:
            return {"events": [{"position": 1, "occurredAt": "2026-12-07T23:00:00+00:00", "type": "agent.registered",
                                "aggregateId": "local", "version": 1, "actor": "agent:local", "payload": "{}"}]}
        os.kill(os.getpid(), signal.SIGINT)  # asyncio.run's handler cancels the command's task
        return {"events": []}


def test_ctrl_c_ends_events_follow_as_it_ends_logs_follow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit status 130, quietly: it said "Aborted!" and exited 1, as for an error."""
    from services.cli import events_cmd

    _register()
    monkeypatch.setattr(events_cmd, "connect_client", QuietHistory)
    result = CliRunner().invoke(cli, ["events", "-f", "--poll", "0.01", "local"])
    assert result.exit_code == 130, result.output
    assert "agent.registered" in result.output and "Aborted" not in result.output
