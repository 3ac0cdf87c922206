"""``berth admin rgroup``: resource groups (scheduler, agent selection, allowed session types,
pending timeout and who may use them). Changing them is the superadmin's."""

from __future__ import annotations

from typing import Any

import click

from services.cli import admin_queries as aq
from services.cli.admin_common import apply_and_show, csv_list, list_rows
from services.cli.running import run_async
from services.cli.output import Output

__all__ = ["rgroup"]

COLUMNS = [("name", "NAME"), ("scheduler", "SCHEDULER"), ("agentSelection", "SELECTION"),
           ("allowedSessionTypes", "TYPES"), ("pendingTimeout", "PENDING TIMEOUT"), ("public", "PUBLIC"),
           ("domains", "DOMAINS"), ("projects", "PROJECTS"), ("keypairs", "KEYPAIRS")]
_FIELDS = [("name", "name"), ("description", "description")] + [(key, header.lower()) for key, header in COLUMNS[1:]]


def _options(func: Any) -> Any:
    """Adds the resource-group options; one left out keeps its value (on create: the default)."""
    options = [
        click.option("--description", default="", help="Free text (create only)."),
        click.option("--scheduler", type=click.Choice(["fifo", "lifo", "drf"]),
                     help="Order of pending sessions within a priority (default fifo)."),
        click.option("--selection", "agent_selection", type=click.Choice(["concentrated", "dispersed", "roundrobin"]),
                     help="How an agent is picked among those that fit (default dispersed)."),
        click.option("--allowed-types", "allowed_types", multiple=True, metavar="TYPE[,TYPE]",
                     help="Session types it runs: interactive, batch (default both)."),
        click.option("--pending-timeout", type=int, help="Seconds a session may stay PENDING (0 = forever)."),
        click.option("--public/--private", "public", default=None,
                     help="Everyone may use it, or only the domains/projects/keypairs listed."),
        click.option("--domain", "domains", multiple=True, metavar="DOMAIN",
                     help="A domain that may use it when private (repeatable; replaces the list)."),
        click.option("--project", "projects", multiple=True, metavar="PROJECT",
                     help="A project that may use it when private (repeatable; replaces the list)."),
        click.option("--keypair", "keypairs", multiple=True, metavar="ACCESS_KEY",
                     help="A keypair that may use it when private (repeatable; replaces the list)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _input(name: str, description: str, scheduler: str | None, agent_selection: str | None,
           allowed_types: tuple[str, ...], pending_timeout: int | None, public: bool | None,
           domains: tuple[str, ...], projects: tuple[str, ...], keypairs: tuple[str, ...]) -> dict[str, Any]:
    return {
        "name": name, "description": description, "scheduler": scheduler, "agentSelection": agent_selection,
        "allowedSessionTypes": csv_list(allowed_types), "pendingTimeout": pending_timeout, "public": public,
        "domains": csv_list(domains), "projects": csv_list(projects), "keypairs": csv_list(keypairs),
    }


@click.group()
def rgroup() -> None:
    """Resource groups: pools of agents with their own scheduling options."""


@rgroup.command("create")
@click.argument("name")
@_options
@click.pass_obj
@run_async
async def rgroup_create(out: Output, name: str, **options: Any) -> None:
    """Create a resource group (agents join it with BERTH_AGENT_RESOURCE_GROUP)."""
    await apply_and_show(out, aq.CREATE_RGROUP, {"i": _input(name, **options)}, (aq.RGROUPS, "resourceGroups", {}),
                         ("name", name), _FIELDS)


@rgroup.command("ls")
@click.pass_obj
@run_async
async def rgroup_ls(out: Output) -> None:
    """List the resource groups you may use (all for a superadmin)."""
    out.table(await list_rows(aq.RGROUPS, "resourceGroups"), COLUMNS)


@rgroup.command("update")
@click.argument("name")
@_options
@click.pass_obj
@run_async
async def rgroup_update(out: Output, name: str, **options: Any) -> None:
    """Change the given options of a resource group; the others stay."""
    data = _input(name, **options)
    if all(value is None for key, value in data.items() if key not in ("name", "description")):  # create only
        raise click.UsageError("nothing to update: give at least one option (berth admin rgroup update --help)")
    await apply_and_show(out, aq.UPDATE_RGROUP, {"i": data}, (aq.RGROUPS, "resourceGroups", {}), ("name", name),
                         _FIELDS)
