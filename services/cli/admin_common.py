"""Helpers shared by the ``berth admin`` commands: option parsing, and "change, then show the
changed row" (read-your-writes: the row is read after the read models reach the change)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import click

from contracts.slots import SlotError, parse_amount
from services.cli.connection import connect_client
from services.cli.output import Output

__all__ = ["apply_and_show", "csv_list", "list_rows", "size_bytes", "slot_list", "slots_option"]


def slot_list(value: str | None, option: str) -> list[dict[str, str]] | None:
    """Returns ``cpu=8,mem=16g`` as ``[{slot, amount}]``; None when not given; ``""`` or ``none`` clears."""
    if value is None:
        return None
    if value.strip().lower() in ("", "none"):
        return []
    slots = []
    for item in value.split(","):
        slot, sep, amount = item.partition("=")
        if not sep or not slot.strip() or not amount.strip():
            raise click.BadParameter(f"expected SLOT=AMOUNT[,SLOT=AMOUNT...] (e.g. cpu=8,mem=16g), got {item!r}",
                                     param_hint=option)
        slots.append({"slot": slot.strip(), "amount": amount.strip()})
    return slots


def size_bytes(value: Any, option: str) -> float | None:
    """Returns a size (``100g``, ``1.5t`` or a byte count) as bytes; None when not given."""
    if value is None:
        return None
    try:
        return float(parse_amount("mem", str(value)))
    except (SlotError, ArithmeticError, ValueError) as exc:
        raise click.BadParameter(f"expected a size such as 100g or a number of bytes, got {value!r}",
                                 param_hint=option) from exc


def csv_list(values: Sequence[str]) -> list[str] | None:
    """Returns repeatable or comma-separated values as one list; None when none were given."""
    items = [item.strip() for value in values for item in value.split(",") if item.strip()]
    return items or None


def slots_option(name: str, help_text: str) -> Any:
    """Returns a click option for slots given as ``SLOT=AMOUNT,...``."""
    return click.option(name, metavar="SLOT=AMOUNT,...", default=None, help=help_text)


async def list_rows(document: str, key: str, variables: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Returns the rows a list query answers."""
    async with connect_client() as client:
        return (await client.execute(document, variables or {}))[key]


async def apply_and_show(out: Output, mutation: str, variables: dict[str, Any], query: tuple[str, str, dict[str, Any]],
                         match: tuple[str, str], fields: Sequence[tuple[str, str]],
                         shown: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
    """Runs a mutation, then prints the row it changed (``match`` = (key, value)) as the read models
    show it once they reached the mutation's position; ``shown`` gives a table's display fields
    (JSON prints the row as the API gives it)."""
    document, key, extra = query
    async with connect_client() as client:
        result = next(iter((await client.execute(mutation, variables)).values()))
        rows = (await client.execute(document, {**extra, "p": result["position"]}))[key]
    row = next((r for r in rows if r.get(match[0]) == match[1]), None)
    if row is None:
        raise click.ClickException(f"{match[1]} was changed but is not visible to you")
    out.record(row if shown is None or out.is_json else shown(row), fields)
