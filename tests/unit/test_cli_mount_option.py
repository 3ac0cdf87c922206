"""``--mount NAME[:PATH][:ro|rw]`` of ``berth session create`` and ``berth run``: parsed into
``createSession`` mount inputs; a malformed one is a usage error before anything is sent."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from services.cli.output import Output
from services.cli.run_cmd import run
from services.cli.session_cmd import session
from services.cli.session_options import parse_mount


@pytest.mark.parametrize("text, parsed", [
    ("data", {"name": "data"}),
    ("data:ro", {"name": "data", "permission": "ro"}),
    ("data:rw", {"name": "data", "permission": "rw"}),
    ("data:/home/work/d", {"name": "data", "target": "/home/work/d"}),
    ("data:sub/dir:ro", {"name": "data", "target": "sub/dir", "permission": "ro"}),
    (".config", {"name": ".config"}),
])
def test_a_mount_is_name_path_and_permission(text: str, parsed: dict) -> None:
    assert parse_mount(text) == parsed


@pytest.mark.parametrize("text", ["", ":x", "data:", "data::ro", "data:x:wd", "a:b:c:d", "data:x:y"])
def test_a_malformed_mount_is_refused(text: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_mount(text)


@pytest.mark.parametrize("command, args", [(session, ["create"]), (run, ["-c", "print(1)"])])
def test_both_commands_refuse_a_malformed_mount_before_connecting(command: click.Command, args: list[str]) -> None:
    result = CliRunner().invoke(command, [*args, "--mount", "data:x:wd"], obj=Output("table"))
    assert (result.exit_code, "the permission is ro or rw, got 'wd'" in result.output) == (2, True), result.output
