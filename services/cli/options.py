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

__all__ = ["FORMATS", "AliasedGroup", "BerthGroup"]

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


class AliasedGroup(click.Group):
    """A group whose commands also answer to other names (``aliases``: alias → command name), as Backend.AI's
    ``backend.ai session destroy|rm|kill``; the help lists each command once, its aliases after its summary."""

    def __init__(self, *args: Any, aliases: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aliases = dict(aliases or {})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Returns the command named ``cmd_name``, or the one it is an alias of."""
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        """Resolves as ``click.Group`` does, under the command's own name (what its usage and errors show)."""
        _, command, rest = super().resolve_command(ctx, args)
        return (command.name if command is not None else None), command, rest

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Lists the commands as ``click.Group`` does, each followed by its aliases."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            also = sorted(alias for alias, target in self.aliases.items() if target == name)
            suffix = f" (also: {', '.join(also)})" if also else ""
            limit = formatter.width - 6 - max(len(n) for n in self.commands) - len(suffix)
            rows.append((name, command.get_short_help_str(limit) + suffix))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
