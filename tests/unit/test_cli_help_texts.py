"""Every ``berth`` command and every option it shows in ``--help`` says what it does: a new user
reading ``berth session rm -h`` saw ``--timeout FLOAT  [default: 60.0]`` and nothing else."""

from __future__ import annotations

import click

from services.cli.main import _register, cli


def commands(command: click.Command, path: tuple[str, ...] = ("berth",)) -> list[tuple[tuple[str, ...], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            found += commands(sub, (*path, name))
    return found


def test_every_command_and_every_shown_option_has_a_help_text() -> None:
    _register()
    found = commands(cli)
    assert len(found) > 60
    silent = [" ".join(path) for path, command in found if not (command.help or command.short_help)]
    silent += [f"{' '.join(path)} {param.opts[0]}" for path, command in found for param in command.params
               if isinstance(param, click.Option) and not param.hidden and not (param.help or "").strip()]
    assert silent == []
