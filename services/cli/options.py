"""Options every command shares, added in one place: the root group's class.

``BerthGroup.add_command`` gives every command below it (not the groups) ``-o/--output``, so
``berth session ls -o json`` works as well as ``berth -o json session ls``, and every command
registered as ``ls`` (and its aliases, such as ``berth ps``) ``-q/--quiet``. Both options only
set the ``Output`` the root group made, so no command's signature changes. It also escapes the
control characters of every error message a command raises (they may quote the server).
"""

from __future__ import annotations

from typing import Any

import click

from services.cli.cells import escape_controls
from services.cli.output import Output

__all__ = ["FORMATS", "BerthGroup"]

FORMATS = ("table", "json")


def _set_format(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(Output).fmt = value


def _set_quiet(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(Output).quiet = True


def output_option() -> click.Option:
    """Returns ``-o/--output``, which sets the output format of the command it is given to."""
    return click.Option(["-o", "--output", "output_format"], type=click.Choice(FORMATS), default=None,
                        expose_value=False, callback=_set_format,
                        help="table (people; plain columns when piped) or json (as before the command).")


def quiet_option() -> click.Option:
    """Returns ``-q/--quiet``, which makes a list command print only ids."""
    return click.Option(["-q", "--quiet", "quiet_ids"], is_flag=True, expose_value=False, callback=_set_quiet,
                        help="Print only ids (names where those are the ids), one per line.")


def _add_shared_options(command: click.Command, name: str) -> None:
    if isinstance(command, click.Group):
        for sub_name, sub in command.commands.items():
            _add_shared_options(sub, sub_name)
        return
    present = {param.name for param in command.params}
    if "output_format" not in present:
        command.params.append(output_option())
    if name == "ls" and "quiet_ids" not in present:
        command.params.append(quiet_option())


class BerthGroup(click.Group):
    """The root ``berth`` group: shares ``-o`` and ``-q`` with the commands added to it (and their
    subcommands), and escapes control characters in error messages."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        """Adds ``cmd`` (under ``name``) with the shared options; ``ls`` is ``name`` for aliases of it."""
        super().add_command(cmd, name)
        _add_shared_options(cmd, "ls" if cmd.name == "ls" else name or cmd.name or "")

    def invoke(self, ctx: click.Context) -> Any:
        """Runs the command; an error it raises is shown with its control characters escaped."""
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            exc.message = escape_controls(exc.message, keep_newlines=True)
            raise
