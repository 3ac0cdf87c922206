"""``berth admin keypair`` and ``berth admin policy``: keypairs and their resource policies."""

from __future__ import annotations

import functools
from typing import Any

import click

from services.cli import admin_queries as aq
from services.cli.cells import UNLIMITED
from services.cli.admin_common import apply_and_show, list_rows, size_bytes, slot_list, slots_option
from services.cli.connection import connect_client
from services.cli.running import run_async
from services.cli.output import Output
from services.cli.vfolder_cmd import size_shown

__all__ = ["keypair", "policy", "policy_shown"]

KEYPAIR_COLUMNS = [("accessKey", "ACCESS KEY"), ("user", "USER"), ("domain", "DOMAIN"), ("role", "ROLE"),
                   ("resourcePolicy", "POLICY"), ("isActive", "ACTIVE"), ("createdAt", "CREATED")]
POLICY_COLUMNS = [("name", "NAME"), ("totalResourceSlots", "TOTAL SLOTS"), ("maxConcurrentSessions", "CONCURRENT"),
                  ("maxPendingSessionCount", "PENDING"), ("maxPendingSessionResourceSlots", "PENDING SLOTS"),
                  ("maxContainersPerSession", "CONTAINERS"), ("idleTimeout", "IDLE S"),
                  ("maxSessionLifetime", "LIFETIME S"), ("rateLimit", "REQ/15MIN"),
                  ("maxConcurrentSubscriptions", "SUBSCRIPTIONS"), ("maxVfolderCount", "FOLDERS"),
                  ("maxQuotaScopeSize", "STORAGE"), ("allowedVfolderHosts", "VOLUMES")]
_KEYPAIR_FIELDS = [(key, header.lower()) for key, header in KEYPAIR_COLUMNS]
_POLICY_FIELDS = [(key, header.lower()) for key, header in POLICY_COLUMNS]
_NONE_AT_ZERO = ("maxConcurrentSessions", "maxPendingSessionCount", "maxContainersPerSession", "idleTimeout",
                 "maxSessionLifetime", "rateLimit", "maxConcurrentSubscriptions", "maxVfolderCount",
                 "maxQuotaScopeSize")
"""The policy limits whose 0 means unlimited (or never)."""
_SLOT_LIMITS = ("totalResourceSlots", "maxPendingSessionResourceSlots")
"""The policy limits whose empty slots mean unlimited."""


def policy_shown(out: Output, row: dict[str, Any]) -> dict[str, Any]:
    """Returns a resource policy as ``out`` shows it: an unlimited limit (0, or no slots) as "none", where
    a bare 0 read as "nothing allowed"; the storage cap as ``size_shown``; each volume's permissions joined."""
    shown = {**row, **{key: UNLIMITED for key in _NONE_AT_ZERO if not row.get(key)}}
    shown.update({key: UNLIMITED for key in _SLOT_LIMITS if not row.get(key)})
    if row.get("maxQuotaScopeSize"):
        shown["maxQuotaScopeSize"] = size_shown(out, row["maxQuotaScopeSize"])
    hosts = row.get("allowedVfolderHosts") or {}
    shown["allowedVfolderHosts"] = {volume: "+".join(perms) for volume, perms in hosts.items()} or UNLIMITED
    return shown


# ---------------------------------------------------------------- keypair


@click.group()
def keypair() -> None:
    """Keypairs: API credentials of a user (role and domain are the user's)."""


@keypair.command("create")
@click.argument("user")
@click.option("--policy", "resource_policy", default="default", show_default=True, help="Its resource policy.")
@click.pass_obj
@run_async
async def keypair_create(out: Output, user: str, resource_policy: str) -> None:
    """Create a keypair for USER and print it; the secret key is shown this once."""
    async with connect_client() as client:
        created = (await client.execute(aq.CREATE_KEYPAIR, {"u": user, "p": resource_policy}))["createKeypair"]
    if out.is_json:
        out.json(created)
        return
    out.record(created, [("accessKey", "access key"), ("secretKey", "secret key")])
    out.info("the secret key is not shown again: keep it (BERTH_ACCESS_KEY / BERTH_SECRET_KEY)")


@keypair.command("ls")
@click.option("--user", help="Only this user's.")
@click.pass_obj
@run_async
async def keypair_ls(out: Output, user: str | None) -> None:
    """List keypairs without their secrets (a user: its own)."""
    out.table(await list_rows(aq.KEYPAIRS, "keypairs", {"u": user}), KEYPAIR_COLUMNS)


@keypair.command("deactivate")
@click.argument("access_key")
@click.pass_obj
@run_async
async def keypair_deactivate(out: Output, access_key: str) -> None:
    """Deactivate a keypair: it no longer authenticates."""
    await apply_and_show(out, aq.DEACTIVATE_KEYPAIR, {"k": access_key}, (aq.KEYPAIRS, "keypairs", {}),
                         ("accessKey", access_key), _KEYPAIR_FIELDS)


@keypair.command("set-policy")
@click.argument("access_key")
@click.argument("resource_policy")
@click.pass_obj
@run_async
async def keypair_set_policy(out: Output, access_key: str, resource_policy: str) -> None:
    """Assign RESOURCE_POLICY to a keypair (superadmins only)."""
    await apply_and_show(out, aq.SET_KEYPAIR_POLICY, {"k": access_key, "p": resource_policy},
                         (aq.KEYPAIRS, "keypairs", {}), ("accessKey", access_key), _KEYPAIR_FIELDS)


# ---------------------------------------------------------------- policy


def _limit_options(func: Any) -> Any:
    """Adds one option per ``KeypairLimits`` field (0 or "" means no limit)."""
    options = [
        slots_option("--total-slots", 'Slots all sessions of a keypair may hold, e.g. cpu=8,mem=16g ("" = unlimited).'),
        click.option("--max-concurrent-sessions", type=int, help="Sessions running at once (0 = unlimited)."),
        click.option("--max-pending-session-count", "--max-pending-sessions", "max_pending_session_count", type=int,
                     help="Sessions PENDING at once (0 = unlimited)."),
        slots_option("--max-pending-session-resource-slots", "Slots all PENDING sessions may request, e.g. mem=32g."),
        click.option("--max-containers-per-session", type=int, help="Kernels of one session (0 = unlimited)."),
        click.option("--idle-timeout", type=int, help="Seconds without an execution before termination (0 = never)."),
        click.option("--max-session-lifetime", type=int, help="Seconds from RUNNING before termination (0 = never)."),
        click.option("--rate-limit", type=int, help="API requests per 15 minutes of each keypair (0 = unlimited; "
                     "default 30000)."),
        click.option("--max-concurrent-subscriptions", type=int, help="Subscriptions (websocket streams) open at once "
                     "per keypair (0 = unlimited; default 64)."),
        click.option("--max-vfolder-count", type=int, help="Folders each user may own (0 = unlimited; default 100)."),
        click.option("--max-quota-scope-size", metavar="SIZE", help="Bytes all folders of a user may hold, e.g. 100g "
                     "(0 = unlimited, the default)."),
        click.option("--vfolder-host", "vfolder_hosts", multiple=True, metavar="VOLUME=PERM[,PERM]",
                     help="A volume and what may be done there (create-vfolder, modify-vfolder, delete-vfolder, "
                     "mount-in-session, upload-file, download-file, invite-others, set-user-specific-permission); "
                     "repeatable, replaces the map (default: local with all)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _limits(name: str, total_slots: str | None, pending_slots: str | None, **counts: int | None) -> dict[str, Any]:
    return {
        "name": name, "totalResourceSlots": slot_list(total_slots, "--total-slots"),
        "maxPendingSessionResourceSlots": slot_list(pending_slots, "--max-pending-session-resource-slots"),
        "maxConcurrentSessions": counts["max_concurrent_sessions"],
        "maxPendingSessionCount": counts["max_pending_session_count"],
        "maxContainersPerSession": counts["max_containers_per_session"],
        "idleTimeout": counts["idle_timeout"], "maxSessionLifetime": counts["max_session_lifetime"],
        "rateLimit": counts["rate_limit"], "maxConcurrentSubscriptions": counts["max_concurrent_subscriptions"],
        "maxVfolderCount": counts["max_vfolder_count"],
        "maxQuotaScopeSize": size_bytes(counts["max_quota_scope_size"], "--max-quota-scope-size"),
        "allowedVfolderHosts": _hosts(counts["vfolder_hosts"]),
    }


def _hosts(values: Any) -> list[dict[str, Any]] | None:
    """Returns ``local=upload-file,download-file`` options as ``[{volume, permissions}]``; None when none."""
    if not values:
        return None
    hosts = []
    for value in values:
        volume, sep, perms = str(value).partition("=")
        if not sep or not volume.strip():
            raise click.BadParameter(f"expected VOLUME=PERM[,PERM...], got {value!r}", param_hint="--vfolder-host")
        hosts.append({"volume": volume.strip(), "permissions": [p.strip() for p in perms.split(",") if p.strip()]})
    return hosts


@click.group()
def policy() -> None:
    """Keypair resource policies: quotas and limits of the keypairs that use them (superadmin)."""


@policy.command("create")
@click.argument("name")
@_limit_options
@click.pass_obj
@run_async
async def policy_create(out: Output, name: str, total_slots: str | None, max_pending_session_resource_slots: str | None,
                        **counts: int | None) -> None:
    """Create a resource policy; a limit left out is unlimited."""
    data = _limits(name, total_slots, max_pending_session_resource_slots, **counts)
    await apply_and_show(out, aq.CREATE_POLICY, {"i": data}, (aq.POLICIES, "resourcePolicies", {}), ("name", name),
                         _POLICY_FIELDS, functools.partial(policy_shown, out))


@policy.command("ls")
@click.pass_obj
@run_async
async def policy_ls(out: Output) -> None:
    """List resource policies (a user: those of its keypairs)."""
    rows = await list_rows(aq.POLICIES, "resourcePolicies")
    out.table(rows if out.is_json else [policy_shown(out, row) for row in rows], POLICY_COLUMNS)


@policy.command("update")
@click.argument("name")
@_limit_options
@click.pass_obj
@run_async
async def policy_update(out: Output, name: str, total_slots: str | None, max_pending_session_resource_slots: str | None,
                        **counts: int | None) -> None:
    """Change the given limits of a resource policy; the others stay."""
    data = _limits(name, total_slots, max_pending_session_resource_slots, **counts)
    if all(value is None for key, value in data.items() if key != "name"):  # it showed the policy, exit 0
        raise click.UsageError("nothing to update: give at least one limit (berth admin policy update --help)")
    await apply_and_show(out, aq.UPDATE_POLICY, {"i": data}, (aq.POLICIES, "resourcePolicies", {}), ("name", name),
                         _POLICY_FIELDS, functools.partial(policy_shown, out))
