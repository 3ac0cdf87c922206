"""``berth usage``."""

from __future__ import annotations

from typing import Any

import click

from services.cli import queries as q
from services.cli.cells import UNLIMITED
from services.cli.connection import connect_client
from services.cli.running import run_async
from services.cli.output import Output
from services.cli.vfolder_cmd import STORAGE, STORAGE_COLUMNS, storage_rows

__all__ = ["usage", "usage_rows"]

COLUMNS = [("scope", "SCOPE"), ("name", "NAME"), ("used", "USED"), ("limit", "LIMIT"),
           ("sessions", "SESSIONS"), ("maxSessions", "MAX SESSIONS")]


def usage_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Returns quota usage rows as a table shows them: no limit, and a keypair's 0 sessions at most (the API's
    "no limit"), as "none", where a bare 0 read as "no session allowed"."""
    return [{**r, "limit": r.get("limit") or UNLIMITED,
             "maxSessions": UNLIMITED if r.get("maxSessions") == 0 else r.get("maxSessions")} for r in rows]


@click.command()
@click.option("--storage", "storage_only", is_flag=True, help="Only the storage table (with -o json: its rows).")
@click.pass_obj
@run_async
async def usage(out: Output, storage_only: bool) -> None:
    """Show quota usage next to the limits: slots held by sessions that occupy resources, then
    storage: the bytes and files of the folders of your quota scopes (user:<you>, project:<each>).

    \b
    A user sees its keypair, its projects and its domain; an admin every scope of its
    domain; a superadmin all. A LIMIT "none", or a slot missing from it, is unlimited;
    MAX SESSIONS "none" is unlimited ("-": a scope without that limit); a storage LIMIT
    "none" is unlimited. With -o json the sessions' rows are printed as the API gives them
    (--storage: the storage rows); there an empty limit and a maxSessions of 0 are unlimited.
    """
    async with connect_client() as client:
        rows = [] if storage_only else (await client.execute(q.USAGE, {}))["quotaUsage"]
        storage = (await client.execute(STORAGE, {}))["storageUsage"] if storage_only or not out.is_json else []
    if not storage_only:
        out.table(rows if out.is_json else usage_rows(rows), COLUMNS)
    if storage_only or not out.is_json:
        out.table(storage if out.is_json else storage_rows(out, storage), STORAGE_COLUMNS,
                  title=None if storage_only or not out.terminal else "Storage")
