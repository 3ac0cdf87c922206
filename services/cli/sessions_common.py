"""Session helpers shared by ``berth session``, ``berth run`` and ``berth exec``: requesting a
session, following its status, reading it back."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, NamedTuple

import click

from services.cli import queries as q
from services.cli.output import Output
from services.sdk.client import BerthClient
from services.common.settings import DEFAULT_IMAGE

__all__ = [
    "DEFAULT_IMAGE",
    "GONE",
    "RUNNING_OR_DONE",
    "default_image",
    "ended_under",
    "fetch_session",
    "follow_status",
    "outcome",
    "parse_resources",
    "request_session",
]


RUNNING_OR_DONE = {"RUNNING", "TERMINATED", "CANCELLED", "ERROR"}
GONE = {"TERMINATED", "CANCELLED", "ERROR"}


def default_image() -> str:
    """Returns ``$BERTH_DEFAULT_IMAGE`` or ``berth/python:latest``."""
    return os.environ.get("BERTH_DEFAULT_IMAGE") or DEFAULT_IMAGE


def parse_resources(values: tuple[str, ...]) -> list[dict[str, str]]:
    """Returns the ``resources`` input of ``-r SLOT=AMOUNT`` options (repeatable or comma-separated)."""
    resources = []
    for value in values:
        for item in value.split(","):
            slot, sep, amount = item.partition("=")
            if not sep or not slot.strip() or not amount.strip():
                raise click.BadParameter(f"expected SLOT=AMOUNT (e.g. cpu=2, mem=4g), got {item!r}", param_hint="-r")
            resources.append({"slot": slot.strip(), "amount": amount.strip()})
    return resources


async def request_session(client: BerthClient, payload: dict[str, Any]) -> tuple[str, int]:
    """Requests a session (``createSession`` input ``payload``); returns its id and event position.
    A retry of a lost request creates no second session (``BerthClient.create_session``: an
    idempotency key kept across its retries)."""
    result = await client.create_session(payload)
    return result["sessionId"], result["position"]


async def fetch_session(client: BerthClient, session_id: str, after: int | None) -> dict[str, Any]:
    """Returns a session with its kernels; raises a ClickException when it is unknown."""
    data = (await client.execute(q.SESSION, {"id": session_id, "after": after}))["session"]
    if data is None:
        raise click.ClickException(f"session {session_id} not found")
    return data


async def ended_under(client: BerthClient, session_id: str) -> str | None:
    """Returns a line saying how the session ended when it no longer runs after a run stopped (``berth rm`` from
    elsewhere, its lifetime or idle timeout, its agent lost): the run's own last words only tell that its
    worker was killed, and ``berth run`` said the session was kept for ``berth exec``. None while it runs, or
    when that cannot be told (the check gets 10 s)."""
    try:
        async with asyncio.timeout(10):
            data = (await client.execute(q.SESSION_BRIEF, {"id": session_id}))["session"]
    except Exception:  # noqa: BLE001 - only a hint: the run's own outcome stands
        return None
    if data is None or data["status"] == "RUNNING":
        return None
    return f"berth: session {data['name'] or data['id']} ended under the run: {outcome(data)}"


def outcome(data: dict[str, Any]) -> str:
    """Returns a session's status with its reason and detail for people:
    ``ERROR (failed-to-start): image 'x' not found and could not be pulled: ...``."""
    if data.get("status") == "PENDING" and data.get("pendingReason"):
        return f"PENDING: {data['pendingReason']}"
    text = f"{data.get('status')} ({data.get('statusReason') or 'no reason given'})"
    return f"{text}: {data['statusDetail']}" if data.get("statusDetail") else text


class Followed(NamedTuple):
    """The last status seen and the position of its last update (for read-your-writes)."""

    status: str
    position: int | None


async def follow_status(client: BerthClient, out: Output, session_id: str, until: set[str], timeout: float) -> Followed:
    """Streams the session's status updates (subscription ``sessionStatus``, on stderr) with their
    details (an image pull's progress, the cause of a failed start) until a status in ``until``;
    returns the last status and the position of its update, so a following query can wait for
    the read model."""
    deadline = time.monotonic() + timeout
    status = "PENDING"
    position: int | None = None
    stream = client.subscribe(q.SESSION_STATUS, {"id": session_id})
    try:
        with out.waiting(f"session {session_id}: {status}") as spinner:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    out.info(f"session {session_id} is still {status} after {timeout:g}s; "
                             f"see `berth session info {session_id}`")
                    return Followed(status, position)
                try:
                    async with asyncio.timeout(remaining):
                        item = await stream.__anext__()
                except StopAsyncIteration:
                    return Followed(status, position)
                except asyncio.TimeoutError:
                    continue
                update = item["sessionStatus"]
                position, status = update["position"], update["status"]
                said = update.get("pendingReason") or update.get("statusDetail")
                detail = f"  {said}" if said else ""
                spinner.update(f"session {session_id}: {status}{detail}")
                out.info(f"  {update['occurredAt']}  {status}{detail}")
                if status in until:
                    return Followed(status, position)
    finally:
        await stream.aclose()
