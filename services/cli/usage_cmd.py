"""``berth usage``."""

from __future__ import annotations

import click

from services.cli import queries as q
from services.cli.connection import connect_client
from services.cli.running import run_async
from services.cli.output import Output

__all__ = ["usage"]

COLUMNS = [("scope", "SCOPE"), ("name", "NAME"), ("used", "USED"), ("limit", "LIMIT"),
           ("sessions", "SESSIONS"), ("maxSessions", "MAX SESSIONS")]


@click.command()
@click.pass_obj
@run_async
async def usage(out: Output) -> None:
    """Show quota usage next to the limits: slots held by sessions that occupy resources.

    \b
    A user sees its keypair, its projects and its domain; an admin every scope of its
    domain; a superadmin all. An empty LIMIT, or a slot missing from it, is unlimited;
    MAX SESSIONS 0 is unlimited.
    """
    rows = (await connect_client().execute(q.USAGE, {}))["quotaUsage"]
    out.table(rows, COLUMNS)
