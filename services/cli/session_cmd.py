"""``berth session create | ls | info | rm``."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from services.cli import queries as q
from services.cli.connection import connect_client
from services.cli.main import run_async
from services.cli.output import Output
from services.common.client import BerthClient

__all__ = ["session"]

DEFAULT_IMAGE = "berth/python:latest"
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
    ("status", "status"), ("statusReason", "reason"), ("clusterSize", "cluster size"),
    ("requestedSlots", "slots"), ("agentIds", "agents"), ("createdAt", "created"),
    ("terminatedAt", "terminated"), ("statusHistory", "history"),
]
KERNEL_COLUMNS = [("id", "KERNEL"), ("clusterRole", "ROLE"), ("agentId", "AGENT"), ("status", "STATUS"),
                  ("containerId", "CONTAINER"), ("exitCode", "EXIT")]
RUNNING_OR_DONE = {"RUNNING", "TERMINATED", "CANCELLED", "ERROR"}
GONE = {"TERMINATED", "CANCELLED", "ERROR"}


@click.group()
def session() -> None:
    """Create, list, inspect and terminate compute sessions."""


def _parse_resources(values: tuple[str, ...]) -> list[dict[str, str]]:
    resources = []
    for value in values:
        for item in value.split(","):
            slot, sep, amount = item.partition("=")
            if not sep or not slot.strip() or not amount.strip():
                raise click.BadParameter(f"expected SLOT=AMOUNT (e.g. cpu=2, mem=4g), got {item!r}", param_hint="-r")
            resources.append({"slot": slot.strip(), "amount": amount.strip()})
    return resources


@session.command("create")
@click.option("-n", "--name", help="Session name (default: generated).")
@click.option("-i", "--image", default=DEFAULT_IMAGE, show_default=True, help="Kernel image.")
@click.option("-r", "--resources", "resources", multiple=True, metavar="SLOT=AMOUNT",
              help="Resource slots per kernel, repeatable or comma-separated: -r cpu=2 -r mem=4g (default cpu=1,mem=1g).")
@click.option("-t", "--type", "session_type", type=click.Choice(["interactive", "batch"]), default="interactive", show_default=True)
@click.option("--startup-command", help="Command a batch session runs.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the session runs (or fails).")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for RUNNING.")
@click.pass_obj
@run_async
async def create(out: Output, name: str | None, image: str, resources: tuple[str, ...], session_type: str,
                 startup_command: str | None, wait: bool, timeout: float) -> None:
    """Create a session; with no options, a default one (1 CPU, 1 GiB)."""
    client = connect_client()
    payload: dict[str, Any] = {"image": image, "sessionType": session_type.upper()}
    if name:
        payload["name"] = name
    if resources:
        payload["resources"] = _parse_resources(resources)
    if startup_command:
        payload["startupCommand"] = startup_command
    result = (await client.execute(q.CREATE_SESSION, {"input": payload}))["createSession"]
    session_id = result["sessionId"]
    out.info(f"session {session_id} requested")
    status = await _follow_status(client, out, session_id, RUNNING_OR_DONE, timeout) if wait else "PENDING"
    data = await _session(client, session_id, result["position"])
    if out.is_json:
        out.json(data)
    else:
        click.echo(session_id)
    if status in ("ERROR", "CANCELLED"):
        raise click.ClickException(f"session {session_id} ended {status}: {data.get('statusReason')}")


@session.command("ls")
@click.option("-s", "--status", "statuses", multiple=True, help="Only these statuses (repeatable).")
@click.option("-a", "--all", "show_all", is_flag=True, help="Include terminated sessions.")
@click.option("--limit", type=int, default=100, show_default=True)
@click.pass_obj
@run_async
async def ls(out: Output, statuses: tuple[str, ...], show_all: bool, limit: int) -> None:
    """List your sessions (all sessions for admins), oldest first."""
    client = connect_client()
    wanted = [s.upper() for s in statuses] or None
    rows: list[dict[str, Any]] = []
    after = None
    while len(rows) < limit:
        page = (await client.execute(q.SESSIONS, {"status": wanted, "first": min(100, limit - len(rows)), "after": after}))["sessions"]
        rows += [r for r in page["edges"] if show_all or wanted or r["status"] not in GONE]
        if not page["hasNextPage"]:
            break
        after = page["endCursor"]
    out.table(rows, SESSION_COLUMNS)


@session.command("info")
@click.argument("session_id")
@click.pass_obj
@run_async
async def info(out: Output, session_id: str) -> None:
    """Show a session, its kernels and its status history."""
    data = await _session(connect_client(), session_id, None)
    if out.is_json:
        out.json(data)
        return
    out.record(data, SESSION_FIELDS)
    out.table(data.get("kernels") or [], KERNEL_COLUMNS)


@session.command("rm")
@click.argument("session_ids", nargs=-1, required=True)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until terminated.")
@click.option("--timeout", type=float, default=60.0, show_default=True)
@click.pass_obj
@run_async
async def rm(out: Output, session_ids: tuple[str, ...], wait: bool, timeout: float) -> None:
    """Terminate sessions (a pending one is cancelled)."""
    client = connect_client()
    for session_id in session_ids:
        await client.execute(q.TERMINATE_SESSION, {"id": session_id})
        out.info(f"session {session_id}: termination requested")
        if wait:
            await _follow_status(client, out, session_id, GONE, timeout)
        click.echo(session_id)


async def _session(client: BerthClient, session_id: str, after: int | None) -> dict[str, Any]:
    data = (await client.execute(q.SESSION, {"id": session_id, "after": after}))["session"]
    if data is None:
        raise click.ClickException(f"session {session_id} not found")
    return data


def status_after(event_type: str, payload: dict[str, Any]) -> str | None:
    """Returns the session status an event leads to, None when it changes none."""
    if event_type == "session.requested":
        return "PENDING"
    if event_type == "session.scheduled":
        return "SCHEDULED"
    if event_type == "session.status_changed":
        return str(payload["status"])
    return None


async def _follow_status(client: BerthClient, out: Output, session_id: str, until: set[str], timeout: float) -> str:
    """Streams the session's status changes until one in ``until``; returns the last status."""
    deadline = time.monotonic() + timeout
    status = "PENDING"
    stream = client.subscribe(q.SESSION_EVENTS, {"id": session_id, "from": 0})
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                out.info(f"session {session_id} is still {status} after {timeout:.0f}s; see `berth session info {session_id}`")
                return status
            try:
                item = await _next(stream, remaining)
            except StopAsyncIteration:
                return status
            event = item["sessionEvents"]
            new = status_after(event["type"], json.loads(event["payload"]))
            if new and new != status or event["type"] == "session.requested":
                status = new or status
                out.info(f"  {event['occurredAt']}  {status}")
            if status in until:
                return status
    finally:
        await stream.aclose()


async def _next(stream: Any, timeout: float) -> Any:
    import asyncio

    return await asyncio.wait_for(stream.__anext__(), timeout=timeout)
