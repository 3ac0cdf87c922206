"""Renders command results as rich tables or JSON (``-o json``)."""

from __future__ import annotations

import json
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
        for _, header in columns:
            table.add_column(header)
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
        if isinstance(value, (dict, list)):
            return json.dumps(value, default=str)
        text = str(value)
        style = _STATUS_STYLE.get(text) if key in ("status",) else None
        return f"[{style}]{text}[/{style}]" if style else text
