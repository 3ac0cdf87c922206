"""``berth session create | ls | info | rm``."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from contracts.status import LIVE_SESSION_STATUSES as LIVE
from services.cli import queries as q
from services.cli.connection import connect_client
from services.cli.options import AliasedGroup
from services.cli.running import run_async
from services.cli.output import Output
from services.cli.session_options import placement_input, placement_options
from services.sdk.client import BerthClient
from services.cli.sessions_common import (
    DEFAULT_IMAGE,
    GONE,
    RUNNING_OR_DONE,
    default_image,
    fetch_session,
    follow_status,
    outcome,
    parse_resources,
    request_session,
)

__all__ = ["listed_statuses", "session", "termination_order"]

PAGE = 100

SESSION_COLUMNS = [
    ("id", "ID"),
    ("name", "NAME"),
    ("status", "STATUS"),
    ("image", "IMAGE"),
    ("requestedSlots", "SLOTS"),
    ("agentIds", "AGENTS"),
    ("createdAt", "CREATED"),
]
SESSION_FIELDS = [
    ("id", "id"), ("name", "name"), ("owner", "owner"), ("image", "image"), ("sessionType", "type"),
    ("status", "status"), ("statusReason", "reason"), ("statusDetail", "detail"),
    ("pendingReason", "pending because"),
    ("domain", "domain"), ("project", "project"), ("resourceGroup", "resource group"), ("priority", "priority"),
    ("clusterSize", "cluster size"),
    ("requestedSlots", "slots"), ("agentIds", "agents"), ("createdAt", "created"),
    ("terminatedAt", "terminated"), ("statusHistory", "history"),
]
MOUNT_COLUMNS = [("name", "FOLDER"), ("target", "MOUNTED AT"), ("permission", "PERMISSION"), ("volume", "VOLUME"),
                 ("folderId", "FOLDER ID")]
KERNEL_COLUMNS = [("id", "KERNEL"), ("clusterRole", "ROLE"), ("agentId", "AGENT"), ("status", "STATUS"),
                  ("containerId", "CONTAINER"), ("exitCode", "EXIT")]


SESSION_ALIASES = {"start": "create", "list": "ls", "destroy": "rm", "kill": "rm"}
"""The names Backend.AI's ``backend.ai session`` gives the same commands."""


@click.group(cls=AliasedGroup, aliases=SESSION_ALIASES)
def session() -> None:
    """Create, list, inspect and terminate compute sessions."""


@session.command("create")
@click.option("-n", "--name", help="Session name (default: generated).")
@click.option("-i", "--image", default=default_image, show_default=DEFAULT_IMAGE, help="Kernel image ($BERTH_DEFAULT_IMAGE overrides the default).")
@click.option("-r", "--resources", "resources", multiple=True, metavar="SLOT=AMOUNT",
              help="Resource slots per kernel, repeatable or comma-separated: -r cpu=2 -r mem=4g (default cpu=1,mem=1g).")
@click.option("-t", "--type", "session_type", type=click.Choice(["interactive", "batch"]), default="interactive",
              show_default=True, help="interactive: you run code in it (berth exec); batch: it runs --startup-command.")
@click.option("--startup-command", help="Command a batch session runs (required with -t batch).")
@placement_options
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the session runs (or fails).")
@click.option("--timeout", type=float, default=60.0, show_default=True,
              help="Seconds to wait for RUNNING; past them the command fails (exit 1) and the session stays requested.")
@click.pass_obj
@run_async
async def create(out: Output, name: str | None, image: str, resources: tuple[str, ...], session_type: str,
                 startup_command: str | None, wait: bool, timeout: float, **placement: Any) -> None:
    """Create a session; with no options, a default one (1 CPU, 1 GiB) in your default project.

    \b
    berth session create -r cpu=2 -r mem=4g --project ml --priority 50
    berth session create -t batch --startup-command "python train.py" --depends-on SESSION_ID --no-wait
    berth session create --mount data --mount models:/home/work/m:ro
    """
    client = connect_client()
    payload: dict[str, Any] = {"image": image, "sessionType": session_type.upper(), **placement_input(**placement)}
    if name:
        payload["name"] = name
    if resources:
        payload["resources"] = parse_resources(resources)
    if startup_command:
        payload["startupCommand"] = startup_command
    session_id, position = await request_session(client, payload)
    out.info(f"session {session_id} requested")
    status, last = "PENDING", None
    try:
        if wait:
            status, last = await follow_status(client, out, session_id, RUNNING_OR_DONE, timeout)
    except asyncio.CancelledError:  # Ctrl-C (asyncio.run cancels us): it stops the waiting, not the session
        out.info(f"session {session_id} stays requested (Ctrl-C stopped the waiting only): "
                 f"`berth session rm {session_id}` cancels it")
        raise
    data = await fetch_session(client, session_id, last or position)
    if out.is_json:
        out.json(data)
    else:
        click.echo(session_id)
    if status in ("ERROR", "CANCELLED"):
        raise click.ClickException(f"session {session_id} ended {outcome(data)}")
    if wait and status not in RUNNING_OR_DONE:  # gave up waiting: a script must not go on as if it ran
        raise click.ClickException(f"session {session_id} is not running yet ({outcome(data)}); it stays requested: "
                                   f"`berth session rm {session_id}` cancels it, --no-wait does not wait")


def listed_statuses(statuses: tuple[str, ...], show_all: bool) -> list[str] | None:
    """Returns the statuses ``ls`` asks the gateway for: those given, any with ``--all``, else the live
    ones. The gateway filters, so that listing live sessions never pages through every ended one."""
    if statuses:
        return [s.upper() for s in statuses]
    return None if show_all else LIVE


@session.command("ls")
@click.option("-s", "--status", "statuses", multiple=True, help="Only these statuses (repeatable).")
@click.option("-a", "--all", "show_all", is_flag=True, help="Include ended sessions (terminated, cancelled, error).")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True,
              help="Show the newest LIMIT sessions.")
@click.pass_obj
@run_async
async def ls(out: Output, statuses: tuple[str, ...], show_all: bool, limit: int) -> None:
    """List your sessions (your domain's for admins, all for superadmins): the newest LIMIT, oldest first."""
    client = connect_client()
    wanted = listed_statuses(statuses, show_all)
    rows: list[dict[str, Any]] = []
    after = None
    while len(rows) < limit:
        variables = {"status": wanted, "first": min(PAGE, limit - len(rows)), "after": after, "newestFirst": True}
        page = (await client.execute(q.SESSIONS, variables))["sessions"]
        rows += page["edges"]
        if not page["hasNextPage"]:
            break
        after = page["endCursor"]
    out.table(rows[::-1], SESSION_COLUMNS)


@session.command("info")
@click.argument("session_id", metavar="SESSION")
@click.pass_obj
@run_async
async def info(out: Output, session_id: str) -> None:
    """Show a session, its kernels and its status history.

    SESSION is an id, a unique id prefix (4+ characters) or a name."""
    data = await fetch_session(connect_client(), session_id, None)
    if out.is_json:
        out.json(data)
        return
    out.record(data, SESSION_FIELDS)
    if data.get("mounts"):
        out.table(data["mounts"], MOUNT_COLUMNS)
    out.table(data.get("kernels") or [], KERNEL_COLUMNS)


@session.command("rm")
@click.argument("session_ids", metavar="SESSION...", nargs=-1, required=True)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until terminated.")
@click.option("--timeout", type=float, default=60.0, show_default=True,
              help="Seconds to wait for each session to end; past them it exits 1 naming those still live "
                   "(their termination stays requested).")
@click.pass_obj
@run_async
async def rm(out: Output, session_ids: tuple[str, ...], wait: bool, timeout: float) -> None:
    """Terminate sessions (a pending one is cancelled); prints the id of each (-o json: a list).

    Each SESSION is an id, a unique id prefix (4+ characters) or a name."""
    client = connect_client()
    refs = list(dict.fromkeys(session_ids))
    statuses = {ref: await _status(client, ref) for ref in refs}
    ids: dict[str, str] = {}
    for ref in termination_order(statuses):
        terminated = await client.execute_while_unavailable(q.TERMINATE_SESSION, {"id": ref})
        ids[ref] = terminated["terminateSession"]["sessionId"]
        out.info(f"session {ids[ref]}: termination requested")
    unfinished = []
    for ref in refs:
        if wait:
            status, last = await follow_status(client, out, ids[ref], GONE, timeout)
            await fetch_session(client, ids[ref], last)  # returns once the read models show it
            if status not in GONE:
                unfinished.append(f"{ids[ref]} ({status})")
        if not out.is_json:
            click.echo(ids[ref])
    if out.is_json:
        out.json([ids[ref] for ref in refs])
    if unfinished:  # `berth rm X && reuse its slots` must not go on while X still holds them
        raise click.ClickException(f"not ended within {timeout:g}s: {', '.join(unfinished)}; "
                                   "the termination stays requested")


async def _status(client: BerthClient, ref: str) -> str | None:
    """Returns the status the read models show for session ``ref``, None when they show none."""
    data = (await client.execute(q.SESSION, {"id": ref, "after": None}))["session"]
    return None if data is None else data["status"]


def termination_order(statuses: dict[str, str | None]) -> list[str]:
    """Returns the sessions (refs, with the status the read models show) in the order to terminate
    them: first those the read models do not show (a typo is refused before anything changes; a
    session just requested is pending), then the pending ones, then the rest, each group in the
    order given. A running session terminated first would free room that a pending one of the same
    command could be placed in and start (its startup command run, its folders written), only to
    be terminated."""
    rank = {None: 0, "PENDING": 1}
    return sorted(statuses, key=lambda ref: rank.get(statuses[ref], 2))
