"""Amounts the CLI prints for people: ``berth app --start``'s wait (it said "after 0 s" of a wait under a
second), ``berth admin project set-storage-limit`` (it printed ``1099511627776.0`` under "storage limit
(bytes)" on a terminal too); the way out of a refused ``berth vfolder download`` of a directory (``--tar``)
and ``berth vfolder invite``'s id, alone on stdout as its help says."""

from __future__ import annotations

import asyncio
import io
import re
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner

from services.cli import admin_cmd, app_cmd
from services.cli.main import _register, cli
from services.cli.output import Output
from services.sdk.client import BerthAPIError


def test_app_start_says_how_long_it_waited_not_0_s(monkeypatch: pytest.MonkeyPatch) -> None:
    async def nothing_listens(*args: Any) -> None:
        raise BerthAPIError("CONFLICT", "nothing accepts connections on port 8000")

    async def started(*args: Any, **kwargs: Any) -> int:
        return 0

    monkeypatch.setattr(app_cmd, "open_app_tunnel", nothing_listens)
    monkeypatch.setattr(app_cmd, "stream_execution", started)
    with pytest.raises(click.ClickException) as failed:
        asyncio.run(app_cmd._started(None, "id", "web", 8000, "sleep 100", 0.3))  # type: ignore[arg-type]
    message = failed.value.message
    assert "after 0 s" not in message and "(--start-timeout 0.3)" in message, message
    assert message.startswith("nothing accepts connections on port 8000 of web after 0.")  # 0.3 s and a poll


@pytest.mark.parametrize(("value", "shown"), [(0.3, "0.3 s"), (0.52, "0.52 s"), (3, "3 s"), (3.41, "3.4 s"),
                                              (120, "120 s"), (119.6, "120 s")])
def test_seconds_for_people(value: float, shown: str) -> None:
    assert app_cmd.seconds(value) == shown


class Limits:
    """A gateway that records a project's storage limit."""

    sent: list[Any] = []

    async def execute(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        Limits.sent.append(variables["b"])
        return {"setProjectStorageLimit": {"id": "ml", "position": 9}}

    async def __aenter__(self) -> "Limits":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize(("args", "terminal", "shown"), [
    (["1t"], True, "1.0 TiB"), (["1t"], False, "1099511627776"), (["0"], False, "none")])
def test_project_storage_limit_is_shown_as_usage_shows_limits(args: list[str], terminal: bool, shown: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin_cmd, "connect_client", Limits)
    printed = io.StringIO()
    out = Output(stdout=printed, stderr=io.StringIO(), terminal=terminal, err_terminal=False, width=100)
    result = CliRunner().invoke(admin_cmd.project_set_storage_limit, ["ml", *args], obj=out)
    assert result.exit_code == 0, result.output
    text = re.sub(r"\x1b\[[0-9;]*m", "", printed.getvalue())  # the terminal's bold labels
    assert f"storage limit  {shown}\n" in text and ".0\n" not in text, text
    _register()
    as_json = CliRunner().invoke(cli, ["-o", "json", "admin", "project", "set-storage-limit", "ml", *args])
    assert '"limitBytes": ' + str(Limits.sent[-1]) in as_json.output and isinstance(Limits.sent[-1], int)


class Tickets:
    """A gateway that hands out a download ticket for any path."""

    async def execute(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        return {"requestDownload": {"url": "http://storage.test", "token": "t", "path": variables["p"]}}

    async def __aenter__(self) -> "Tickets":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


def test_downloading_a_directory_without_tar_points_at_tar(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The storage service refuses a directory (400 "not a regular file"); the command said only that."""
    from services.cli import vfolder_transfer_cmd

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "not a regular file: 'runs' is a directory"})

    real = httpx.AsyncClient
    monkeypatch.setattr(vfolder_transfer_cmd, "connect_client", Tickets)
    monkeypatch.setattr(vfolder_transfer_cmd.httpx, "AsyncClient",
                        lambda **kwargs: real(transport=httpx.MockTransport(refuse), **kwargs))
    _register()
    result = CliRunner().invoke(cli, ["vfolder", "download", "data", "runs", "--to", str(tmp_path / "runs")])
    assert result.exit_code == 1, result.output
    assert "is a directory; a directory comes as a tar archive: berth vfolder download data runs --tar" in result.output
    assert list(tmp_path.iterdir()) == []


class Invitations:
    """A gateway that records an invitation."""

    async def execute(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        return {"inviteToVFolder": {"id": "9329e8a845274ed193f5e209dd161fda", "position": 555}}

    async def __aenter__(self) -> "Invitations":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


def test_invite_prints_the_invitations_id_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """As its help says, so that `ID=$(berth vfolder invite ...)` works (it printed a record with its position)."""
    from services.cli import vfolder_cmd

    _register()
    monkeypatch.setattr(vfolder_cmd, "connect_client", Invitations)
    result = CliRunner().invoke(cli, ["vfolder", "invite", "data", "bob"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "9329e8a845274ed193f5e209dd161fda\n"
    as_json = CliRunner().invoke(cli, ["-o", "json", "vfolder", "invite", "data", "bob"])
    assert '"position": 555' in as_json.stdout
