"""``berth dlq ls | show | replay | drop``: the messages consumers gave up (superadmins), through
the gateway's GraphQL API (the CLI never talks to NATS)."""

from __future__ import annotations

from typing import Any

import click

from services.cli.connection import connect_client
from services.cli.output import Output
from services.cli.running import run_async

__all__ = ["dlq"]

FIELDS = "seq consumer subject reason deliveries deadLetteredAt size originalSize cut"
LIST = f"""query($c: String, $a: Int!, $l: Int!) {{
  deadLetters(consumer: $c, after: $a, limit: $l) {{ total entries {{ {FIELDS} }} }} }}"""
SHOW = f"query($s: Int!) {{ deadLetter(seq: $s) {{ {FIELDS} headers body truncated }} }}"
REPLAY = """mutation($s: Int, $c: String, $all: Boolean!, $l: Int!) {
  replayDeadLetters(seq: $s, consumer: $c, all: $all, limit: $l) { done refused { seq reason } } }"""
DROP = """mutation($s: Int, $c: String, $all: Boolean!, $l: Int!) {
  dropDeadLetters(seq: $s, consumer: $c, all: $all, limit: $l) { done refused { seq reason } } }"""

COLUMNS = [("seq", "SEQ"), ("consumer", "CONSUMER"), ("subject", "SUBJECT"), ("reason", "REASON"),
           ("deliveries", "DELIVERIES"), ("deadLetteredAt", "TIME")]
DETAIL = [("seq", "seq"), ("consumer", "consumer"), ("subject", "subject"), ("reason", "reason"),
          ("deliveries", "deliveries"), ("deadLetteredAt", "dead-lettered at"), ("size", "bytes"),
          ("originalSize", "original bytes"), ("headers", "headers")]
MAX_LIMIT = 1000


async def _execute(document: str, variables: dict[str, Any]) -> dict[str, Any]:
    async with connect_client() as client:
        return await client.execute(document, variables)


@click.group()
def dlq() -> None:
    """Dead letters: messages a consumer gave up (superadmins)."""


@dlq.command("ls")
@click.option("--consumer", help="Only this consumer's (e.g. controller, agent-<id>, projector).")
@click.option("--after", type=int, default=0, show_default=True, help="Only entries after this sequence.")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=100, show_default=True,
              help="List at most this many entries.")
@click.pass_obj
@run_async
async def ls(out: Output, consumer: str | None, after: int, limit: int) -> None:
    """List dead letters, oldest first: sequence, consumer, subject, reason, deliveries, time."""
    page = (await _execute(LIST, {"c": consumer, "a": after, "l": limit}))["deadLetters"]
    if out.is_json:
        out.json(page)
        return
    out.table(page["entries"], COLUMNS)
    if not out.quiet:
        out.info(f"{len(page['entries'])} shown of {page['total']}")


@dlq.command("show")
@click.argument("seq", type=int)
@click.pass_obj
@run_async
async def show(out: Output, seq: int) -> None:
    """Show one dead letter: its headers and its body (JSON decoded, at most 16,000 characters)."""
    letter = (await _execute(SHOW, {"s": seq}))["deadLetter"]
    if out.is_json:
        out.json(letter)
        return
    out.record(letter, DETAIL)
    out.line(letter["body"])
    if letter["truncated"]:
        out.info("(body cut at 16,000 characters)")
    if letter["cut"]:
        out.info(f"(only the first {letter['size']} of the message's {letter['originalSize']} bytes were kept, "
                 "too large to dead-letter whole: it cannot be replayed)")


def _target(seq: int | None, consumer: str | None, all_: bool) -> dict[str, Any]:
    if sum((seq is not None, consumer is not None, all_)) != 1:
        raise click.UsageError("give exactly one of SEQ, --consumer or --all")
    return {"s": seq, "c": consumer, "all": all_}


def _report(out: Output, outcome: dict[str, Any], verb: str) -> None:
    if out.is_json:
        out.json(outcome)
    else:
        out.line(f"{verb}: {len(outcome['done'])}" + (f" ({', '.join(map(str, outcome['done']))})" if outcome["done"] else ""))
        for refusal in outcome["refused"]:
            out.line(f"refused {refusal['seq']}: {refusal['reason']}")
    if outcome["refused"]:
        raise SystemExit(1)


def _targets(func: Any) -> Any:
    for option in reversed([
        click.argument("seq", type=int, required=False),
        click.option("--consumer", help="Every entry of this consumer (the first --limit)."),
        click.option("--all", "all_", is_flag=True, help="Every entry (the first --limit)."),
        click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=100, show_default=True,
                     help="With --consumer or --all: at most this many entries, the oldest first."),
    ]):
        func = option(func)
    return func


@dlq.command("replay")
@_targets
@click.pass_obj
@run_async
async def replay(out: Output, seq: int | None, consumer: str | None, all_: bool, limit: int) -> None:
    """Publish dead letters again where they came from, then remove them (exactly once in effect).

    Only reports (consumer "controller") are replayed; an event is refused with the reason (it
    would reach every consumer again): drop it once its cause is dealt with. Exits 1 when any
    entry was refused.
    """
    outcome = (await _execute(REPLAY, {**_target(seq, consumer, all_), "l": limit}))["replayDeadLetters"]
    _report(out, outcome, "replayed")


@dlq.command("drop")
@_targets
@click.pass_obj
@run_async
async def drop(out: Output, seq: int | None, consumer: str | None, all_: bool, limit: int) -> None:
    """Remove dead letters for good. Exits 1 when any entry was already gone."""
    outcome = (await _execute(DROP, {**_target(seq, consumer, all_), "l": limit}))["dropDeadLetters"]
    _report(out, outcome, "dropped")
