"""Renders command results as rich tables or JSON (``-o json``)."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.table import Table

__all__ = ["Output"]

_STATUS_STYLE = {
    "RUNNING": "green",
    "PENDING": "yellow",
    "TERMINATED": "dim",
    "CANCELLED": "dim",
    "ERROR": "red",
    "LOST": "red",
    "ALIVE": "green",
}


_ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
_BINARY = ((1024**4, "TiB"), (1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB"))


def _amount(slot: str, value: Any) -> str:
    """Returns a slot amount for people: memory in binary units, the rest as given."""
    if slot != "mem":
        return str(value)
    try:
        size = Decimal(str(value))
    except ArithmeticError:
        return str(value)
    for factor, unit in _BINARY:
        if size >= factor:
            return f"{(size / factor).normalize():f}{unit}" if size % (factor // 1024 or 1) == 0 else f"{size / factor:.1f}{unit}"
    return f"{size}B"


class Output:
    """Prints rows as a table (default) or as JSON for scripts."""

    def __init__(self, fmt: str = "table") -> None:
        self.fmt = fmt
        self.console = Console(highlight=False)
        self.err = Console(stderr=True, highlight=False)

    @property
    def is_json(self) -> bool:
        return self.fmt == "json"

    def json(self, data: Any) -> None:
        print(json.dumps(data, indent=2, default=str))

    def table(self, rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], title: str | None = None) -> None:
        """Prints ``rows``; ``columns`` are (key, header) pairs."""
        if self.is_json:
            self.json(list(rows))
            return
        table = Table(title=title, header_style="bold")
        for key, header in columns:
            table.add_column(header, no_wrap=key == "id", overflow="fold")
        for row in rows:
            table.add_row(*(self._cell(key, row.get(key)) for key, _ in columns))
        self.console.print(table)

    def record(self, data: dict[str, Any], fields: Iterable[tuple[str, str]]) -> None:
        """Prints one object as aligned ``label: value`` lines."""
        if self.is_json:
            self.json(data)
            return
        for key, label in fields:
            self.console.print(f"[bold]{label:>16}[/bold]  {self._cell(key, data.get(key))}")

    def info(self, message: str) -> None:
        """Prints progress to stderr so stdout stays parseable."""
        self.err.print(message)

    def _cell(self, key: str, value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, dict) and key == "statusHistory":
            return " → ".join(f"{k} {str(v)[11:19]}" for k, v in sorted(value.items(), key=lambda kv: str(kv[1])))
        if isinstance(value, dict):
            return " ".join(f"{k}={_amount(k, v)}" for k, v in value.items()) or "-"
        if isinstance(value, list):
            return ", ".join(map(str, value)) or "-"
        text = str(value)
        if _ISO_TIME.match(text):
            text = text[:19].replace("T", " ")
        style = _STATUS_STYLE.get(text) if key in ("status",) else None
        return f"[{style}]{text}[/{style}]" if style else text
