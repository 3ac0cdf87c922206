"""``berth events``: the history of one aggregate or of everything, optionally followed live."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import click

from services.cli import queries as q
from services.cli.connection import connect_client
from services.cli.exec_cmd import INTERRUPTED
from services.cli.running import run_async
from services.cli.output import Output
from services.sdk.client import BerthAPIError, BerthClient

__all__ = ["events"]

COLUMNS = [("position", "POS"), ("occurredAt", "TIME"), ("type", "TYPE"), ("aggregateId", "AGGREGATE"),
           ("aggregateVersion", "VER"), ("actor", "ACTOR"), ("summary", "DETAILS")]
PAGE = 500
DEFAULT_LAST = 100
_ENVELOPE = {"type", "event_id", "originator_id", "originator_version", "timestamp", "metadata"}
SHOWN_ON_TERMINAL = 120
"""Characters of an event's DETAILS shown on a terminal (cut with an ellipsis); piped, they are whole."""


def _summary(payload: str) -> str:
    body = {k: v for k, v in json.loads(payload).items() if k not in _ENVELOPE and v not in (None, [], {})}
    return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False, separators=(',', ':'))}" for k, v in body.items())


def _for(out: Output, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Returns ``rows`` as ``out`` shows them: on a terminal, each DETAILS cut to ``SHOWN_ON_TERMINAL`` characters
    (an ellipsis saying so); piped or as JSON, whole (a script reading them lost what was past 120 characters)."""
    if not out.terminal or out.is_json:
        return rows
    return [{**row, "summary": _cut(row["summary"])} for row in rows]


def _cut(text: str) -> str:
    return text if len(text) <= SHOWN_ON_TERMINAL else text[:SHOWN_ON_TERMINAL - 1] + "…"


@click.command()
@click.argument("aggregate_id", required=False)
@click.option("--since", type=click.DateTime(), help="Only events at or after this UTC time.")
@click.option("--until", type=click.DateTime(), help="Only events before this UTC time.")
@click.option("-n", "--last", type=click.IntRange(min=0), default=DEFAULT_LAST, show_default=True,
              help="Only the last N events (0: all of them, oldest first).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events until Ctrl-C.")
@click.option("--poll", type=float, default=0.5, show_default=True, help="Seconds between checks with --follow.")
@click.pass_obj
@run_async
async def events(out: Output, aggregate_id: str | None, since: dt.datetime | None, until: dt.datetime | None,
                 last: int, follow: bool, poll: float) -> None:
    """Show the event history of AGGREGATE_ID (a session: its id, a unique id prefix or its name;
    an agent or keypair id), or of everything: the last N events (-n), oldest first."""
    client = connect_client()
    if aggregate_id is not None:
        aggregate_id = await _session_or_aggregate(client, aggregate_id)
    variables: dict[str, Any] = {
        "aggregateId": aggregate_id,
        "since": since.replace(tzinfo=dt.UTC).isoformat() if since else None,
        "until": until.replace(tzinfo=dt.UTC).isoformat() if until else None,
        "first": PAGE,
        "after": None,
    }
    collected: list[dict[str, Any]] = []
    if last:
        collected = await _last(client, variables, last)
        if len(collected) == last:
            out.info(f"berth: the last {last} events; earlier ones with -n 0 (all) or --since/--until")
        if collected:
            variables["after"] = collected[-1]["position"]
        if follow:
            _print_rows(out, _for(out, collected))
    if follow and aggregate_id is not None and not (since or until or collected) and not await _last(
            client, variables, 1):  # a misspelt name: following it printed nothing, for ever
        raise click.ClickException(_unknown(aggregate_id))
    try:
        while last == 0 or follow:
            page = await _page(client, variables)
            if follow:
                _print_rows(out, _for(out, page))
            else:
                collected += page
            if page:
                variables["after"] = page[-1]["position"]
            if len(page) == PAGE:
                continue
            if not follow:
                break
            await asyncio.sleep(poll)
    except asyncio.CancelledError:  # Ctrl-C (asyncio.run cancels us): how a follow ends, as `berth logs -f` ends
        if not follow:
            raise
        raise click.exceptions.Exit(INTERRUPTED) from None  # it said "Aborted!" and exited 1, as for an error
    if not collected and aggregate_id is not None and not (since or until or follow):
        raise click.ClickException(_unknown(aggregate_id))
    if not collected and not out.is_json:
        out.info("no events" + (f" for {aggregate_id}" if aggregate_id else ""))
        return
    out.table(_for(out, collected), COLUMNS)


def _unknown(aggregate_id: str) -> str:
    return (f"no session, agent or keypair {aggregate_id!r} (a session: its id, a unique id prefix of 4+ characters "
            "or its name; `berth ps -a` lists them)")


async def _page(client: BerthClient, variables: dict[str, Any]) -> list[dict[str, Any]]:
    page: list[dict[str, Any]] = (await client.execute(q.EVENTS, variables))["events"]
    for row in page:
        row["summary"] = _summary(row["payload"])
    return page


async def _last(client: BerthClient, variables: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """Returns the last ``count`` events the query matches, oldest first: asked newest first, so that
    a long history is never paged through."""
    newest: list[dict[str, Any]] = []
    asked = {**variables, "newestFirst": True, "before": None}
    while len(newest) < count:
        asked["first"] = min(PAGE, count - len(newest))
        page = await _page(client, asked)
        newest += page
        if len(page) < asked["first"]:
            break
        asked["before"] = page[-1]["position"]
    return newest[::-1]


async def _session_or_aggregate(client: BerthClient, ref: str) -> str:
    """Returns the id of the session ``ref`` means (the gateway resolves it), else ``ref`` itself (an
    agent, a keypair, ...); an ambiguous reference is an error that lists the candidates."""
    try:
        found = (await client.execute(q.SESSION_ID, {"id": ref}))["session"]
    except BerthAPIError as exc:
        if exc.code != "BAD_INPUT":
            raise
        return ref
    return str(found["id"]) if found else ref


def _print_rows(out: Output, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        if out.is_json:
            print(json.dumps(row, default=str), flush=True)
        else:
            out.line(f"{row['position']:>8}  {row['occurredAt']}  ", (f"{row['type']:<34}", "bold"),
                     f" {row['aggregateId']}  {row['summary']}")
