"""``berth admin``: tenancy administration. ``domain`` / ``project`` / ``user`` live here;
``keypair`` and ``policy`` in ``admin_access_cmd``, ``rgroup`` in ``admin_rgroup_cmd``.

A superadmin manages everything; an admin its own domain (projects, users, keypairs); what
a caller may not see is "not found".
"""

from __future__ import annotations

from typing import Any

import click

from services.cli import admin_queries as aq
from services.cli.admin_access_cmd import keypair, policy
from services.cli.admin_bus_cmd import agent, bus
from services.cli.connection import connect_client
from services.cli.admin_common import apply_and_show, csv_list, list_rows, size_bytes, slot_list, slots_option
from services.cli.admin_rgroup_cmd import rgroup
from services.cli.cells import UNLIMITED
from services.cli.running import run_async
from services.cli.output import Output
from services.cli.vfolder_cmd import size_shown

__all__ = ["admin"]

DOMAIN_COLUMNS = [("name", "NAME"), ("description", "DESCRIPTION"), ("totalResourceSlots", "QUOTA"),
                  ("createdAt", "CREATED")]
PROJECT_COLUMNS = [("name", "NAME"), ("domain", "DOMAIN"), ("description", "DESCRIPTION"),
                   ("totalResourceSlots", "QUOTA"), ("createdAt", "CREATED")]
USER_COLUMNS = [("name", "NAME"), ("domain", "DOMAIN"), ("role", "ROLE"), ("projects", "PROJECTS"),
                ("isActive", "ACTIVE"), ("createdAt", "CREATED")]


def _fields(columns: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(key, header.lower()) for key, header in columns]


@click.group()
def admin() -> None:
    """Administer tenancy: domains, projects, users, keypairs, resource policies, resource groups; agents' bus credentials.

    \b
    berth admin domain create lab --total-slots cpu=64,mem=256g
    berth admin project create ml --domain lab
    berth admin user create dave --domain lab --project ml
    berth admin keypair create dave           # prints the secret key once
    berth admin policy create small --max-pending-session-count 3 --total-slots cpu=8,mem=16g
    berth admin rgroup create gpu --scheduler drf --private --domain lab
    berth admin agent enrol gpu-7             # the agent's bus credential (local admin material)
    """


admin.add_command(agent)
admin.add_command(bus)
admin.add_command(keypair)
admin.add_command(policy)
admin.add_command(rgroup)


# ---------------------------------------------------------------- domain


@admin.group()
def domain() -> None:
    """Domains: the top tenants, each with an optional quota (superadmin)."""


@domain.command("create")
@click.argument("name")
@click.option("--description", default="", help="Free text.")
@slots_option("--total-slots", "Domain quota, e.g. cpu=64,mem=256g (a slot left out is unlimited).")
@click.pass_obj
@run_async
async def domain_create(out: Output, name: str, description: str, total_slots: str | None) -> None:
    """Create a domain."""
    data = {"name": name, "description": description, "totalResourceSlots": slot_list(total_slots, "--total-slots")}
    await apply_and_show(out, aq.CREATE_DOMAIN, {"i": data}, (aq.DOMAINS, "domains", {}), ("name", name),
                         _fields(DOMAIN_COLUMNS))


@domain.command("ls")
@click.pass_obj
@run_async
async def domain_ls(out: Output) -> None:
    """List the domains you may see (yours, or all for a superadmin)."""
    out.table(await list_rows(aq.DOMAINS, "domains"), DOMAIN_COLUMNS)


@domain.command("update")
@click.argument("name")
@slots_option("--total-slots", 'The new quota, e.g. cpu=32 ("" removes it).')
@click.pass_obj
@run_async
async def domain_update(out: Output, name: str, total_slots: str | None) -> None:
    """Set a domain's quota."""
    if total_slots is None:
        raise click.UsageError("nothing to update: give --total-slots")
    data = {"name": name, "totalResourceSlots": slot_list(total_slots, "--total-slots")}
    await apply_and_show(out, aq.UPDATE_DOMAIN, {"i": data}, (aq.DOMAINS, "domains", {}), ("name", name),
                         _fields(DOMAIN_COLUMNS))


# ---------------------------------------------------------------- project


@admin.group()
def project() -> None:
    """Projects: groups of users within a domain; sessions run in one."""


@project.command("create")
@click.argument("name")
@click.option("--domain", "domain_name", help="Its domain (default: yours).")
@click.option("--description", default="", help="Free text.")
@slots_option("--total-slots", "Project quota, e.g. cpu=16,mem=64g.")
@click.pass_obj
@run_async
async def project_create(out: Output, name: str, domain_name: str | None, description: str, total_slots: str | None) -> None:
    """Create a project."""
    data = {"name": name, "domain": domain_name, "description": description,
            "totalResourceSlots": slot_list(total_slots, "--total-slots")}
    await apply_and_show(out, aq.CREATE_PROJECT, {"i": data}, (aq.PROJECTS, "projects", {}), ("name", name),
                         _fields(PROJECT_COLUMNS))


@project.command("ls")
@click.option("--domain", "domain_name", help="Only this domain's.")
@click.pass_obj
@run_async
async def project_ls(out: Output, domain_name: str | None) -> None:
    """List the projects you may see (a user: its own)."""
    out.table(await list_rows(aq.PROJECTS, "projects", {"d": domain_name}), PROJECT_COLUMNS)


@project.command("update")
@click.argument("name")
@slots_option("--total-slots", 'The new quota ("" removes it).')
@click.pass_obj
@run_async
async def project_update(out: Output, name: str, total_slots: str | None) -> None:
    """Set a project's quota."""
    if total_slots is None:
        raise click.UsageError("nothing to update: give --total-slots")
    data = {"name": name, "totalResourceSlots": slot_list(total_slots, "--total-slots")}
    await apply_and_show(out, aq.UPDATE_PROJECT, {"i": data}, (aq.PROJECTS, "projects", {}), ("name", name),
                         _fields(PROJECT_COLUMNS))


@project.command("set-storage-limit")
@click.argument("name")
@click.argument("size")
@click.pass_obj
@run_async
async def project_set_storage_limit(out: Output, name: str, size: str) -> None:
    """Set the bytes all folders of project NAME may hold together, e.g. 1t (0 = no limit)."""
    limit = int(size_bytes(size, "SIZE") or 0)
    async with connect_client() as client:
        result = (await client.execute(aq.SET_PROJECT_STORAGE_LIMIT, {"n": name, "b": limit}))["setProjectStorageLimit"]
    if out.is_json:
        out.json({"project": name, "limitBytes": limit, "position": result["position"]})
        return
    # as `berth usage` shows a limit: binary units on a terminal, exact bytes piped, none for 0 (not 1099511627776.0)
    out.record({"project": name, "limit": size_shown(out, limit) if limit else UNLIMITED},
               [("project", "project"), ("limit", "storage limit")])


# ---------------------------------------------------------------- user


@admin.group()
def user() -> None:
    """Users: people in a domain, with a role and project memberships."""


@user.command("create")
@click.argument("name")
@click.option("--domain", "domain_name", help="Its domain (default: yours).")
@click.option("--role", type=click.Choice(["user", "admin", "superadmin"]), default="user", show_default=True,
              help="admin: manages its domain; superadmin: everything (only a superadmin creates one).")
@click.option("-p", "--project", "projects", multiple=True, metavar="PROJECT",
              help='A project it belongs to, repeatable (default: "default" in domain default, else none).')
@click.pass_obj
@run_async
async def user_create(out: Output, name: str, domain_name: str | None, role: str, projects: tuple[str, ...]) -> None:
    """Create a user (then give it a keypair: berth admin keypair create NAME)."""
    data: dict[str, Any] = {"name": name, "domain": domain_name, "role": role, "projects": csv_list(projects)}
    await apply_and_show(out, aq.CREATE_USER, {"i": data}, (aq.USERS, "users", {}), ("name", name),
                         _fields(USER_COLUMNS))


@user.command("ls")
@click.option("--domain", "domain_name", help="Only this domain's.")
@click.pass_obj
@run_async
async def user_ls(out: Output, domain_name: str | None) -> None:
    """List the users you may see (a user: itself)."""
    out.table(await list_rows(aq.USERS, "users", {"d": domain_name}), USER_COLUMNS)


@user.command("deactivate")
@click.argument("name")
@click.pass_obj
@run_async
async def user_deactivate(out: Output, name: str) -> None:
    """Deactivate a user: none of its keypairs authenticates any more."""
    await apply_and_show(out, aq.DEACTIVATE_USER, {"n": name}, (aq.USERS, "users", {}), ("name", name),
                         _fields(USER_COLUMNS))
