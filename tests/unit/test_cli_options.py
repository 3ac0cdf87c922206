"""The ``berth`` command tree: ``-o`` after any command, ``-q`` on every ``ls``, error messages
escaped, ``--version``, ``berth ps``, Backend.AI's names of the session commands; and how ``berth logs -f`` finds what a poll added."""

from __future__ import annotations

import importlib.metadata

import click
from click.testing import CliRunner

from services.cli.logs_follow import ANCHOR, new_part
from services.cli.main import _register, cli
from services.cli.options import BerthGroup
from services.cli.output import Output


def leaves(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    if isinstance(command, click.Group):
        return [leaf for name, sub in command.commands.items() for leaf in leaves(sub, (*path, name))]
    return [(path, command)]


def option_names(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in getattr(param, "opts", [])}


def test_every_command_takes_output_and_every_ls_takes_quiet() -> None:
    _register()
    commands = leaves(cli)
    assert len(commands) > 30
    for path, command in commands:
        assert {"-o", "--output"} <= option_names(command), path
        assert ("-q" in option_names(command)) == (path[-1] in ("ls", "ps")), path
    assert cli.commands["ps"] is cli.commands["session"].commands["ls"]  # type: ignore[attr-defined]


def test_no_command_declares_an_option_twice() -> None:
    """An option declared twice makes click warn on every run of the command (`berth vfolder ls` did:
    its own -q/--quiet and the shared one)."""
    _register()
    for path, command in leaves(cli):
        opts = [opt for param in command.params for opt in getattr(param, "opts", [])]
        assert len(opts) == len(set(opts)), (path, sorted(opt for opt in opts if opts.count(opt) > 1))


def toy() -> BerthGroup:
    @click.group(cls=BerthGroup)
    @click.option("-o", "--output", "fmt", default="table")
    @click.pass_context
    def root(ctx: click.Context, fmt: str) -> None:
        ctx.obj = Output(fmt)

    @click.group()
    def things() -> None:
        pass

    @things.command("ls")
    @click.pass_obj
    def things_ls(out: Output) -> None:
        click.echo(f"{out.fmt} quiet={out.quiet}")

    @things.command("fail")
    def things_fail() -> None:
        raise click.ClickException("server said: \x1b[2J[/]gone\nsecond line")

    root.add_command(things)
    root.add_command(things_ls, "list")
    return root


def test_output_and_quiet_are_accepted_after_the_command() -> None:
    runner = CliRunner()
    assert runner.invoke(toy(), ["things", "ls"]).stdout == "table quiet=False\n"
    assert runner.invoke(toy(), ["things", "ls", "-o", "json", "-q"]).stdout == "json quiet=True\n"
    assert runner.invoke(toy(), ["-o", "json", "things", "ls"]).stdout == "json quiet=False\n"
    assert runner.invoke(toy(), ["list", "--output", "json", "--quiet"]).stdout == "json quiet=True\n"
    assert runner.invoke(toy(), ["things", "fail", "-o", "json"]).exit_code == 1


def test_error_messages_are_shown_with_their_controls_escaped() -> None:
    result = CliRunner().invoke(toy(), ["things", "fail"])
    assert result.exit_code == 1
    assert result.stderr == "Error: server said: \\x1b[2J[/]gone\nsecond line\n"


def test_version_comes_from_the_package_metadata() -> None:
    _register()
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"berth {importlib.metadata.version('berth')}\n"


def test_ps_is_session_ls() -> None:
    _register()
    result = CliRunner().invoke(cli, ["ps", "-h"])
    assert result.exit_code == 0
    for option in ("--status", "--all", "--limit", "--output", "--quiet"):
        assert option in result.stdout


def test_the_session_commands_answer_to_backend_ais_names_too() -> None:
    """``berth session destroy|kill`` is ``rm``, ``start`` is ``create``, ``list`` is ``ls`` (as in ``backend.ai
    session``), and ``berth rm`` is ``berth session rm`` (as ``backend.ai rm``); the help lists each command once,
    with its aliases; a name that is neither is still refused."""
    _register()
    for alias, name in (("destroy", "rm"), ("kill", "rm"), ("start", "create"), ("list", "ls")):
        result = CliRunner().invoke(cli, ["session", alias, "--help"])  # (-h: cached per command by click, as first asked)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"Usage: cli session {name} "), result.stdout  # CliRunner names the root "cli"
    assert cli.commands["rm"] is cli.commands["session"].commands["rm"]  # type: ignore[attr-defined]
    listing = CliRunner().invoke(cli, ["session", "--help"]).stdout
    assert "(also: destroy, kill)" in listing and "(also: start)" in listing
    assert [line.split()[0] for line in listing.split("Commands:")[1].splitlines() if line.strip()] == [
        "create", "info", "ls", "rm"]
    refused = CliRunner().invoke(cli, ["session", "nope"])
    assert refused.exit_code == 2 and "No such command 'nope'" in refused.output


def test_a_growing_log_prints_only_what_was_added() -> None:
    assert new_part("", "a\n") == ("a\n", False)
    assert new_part("a\n", "a\nb\n") == ("b\n", False)
    assert new_part("a\nb\n", "a\nb\n") == ("", False)


def test_a_log_cut_at_the_front_is_found_by_the_end_of_what_was_shown() -> None:
    shown = "".join(f"line {i}\n" for i in range(2000))
    now = shown[5000:] + "line 2000\nline 2001\n"
    assert len(shown) > ANCHOR
    assert new_part(shown, now) == ("line 2000\nline 2001\n", False)


def test_a_log_that_moved_on_by_more_than_it_keeps_is_printed_whole_and_flagged() -> None:
    assert new_part("old\n", "new\n") == ("new\n", True)
