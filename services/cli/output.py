"""Renders command results for people and for scripts.

* ``-o json``: JSON on stdout (control characters escaped by JSON itself).
* stdout a terminal: rich tables and ``label  value`` records, statuses coloured.
* stdout not a terminal (a pipe, a file): plain aligned columns as ``docker ps`` and ``kubectl get``
  print them: a header, then one line per row with full values, columns separated by at least three
  spaces, no box drawing, no wrapping; an empty value prints as ``-``, so ``awk '{print $1}'`` gives
  the ids.
* ``-q``: only the ids, one per line.

Untrusted text is never markup: cells reach rich as ``Text`` objects, after
``cells.escape_controls``. Progress goes to stderr; a spinner only when stderr is a terminal.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Iterable, Iterator, Sequence, TextIO

from rich.cells import cell_len
from rich.console import Console
from rich.status import Status
from rich.table import Table
from rich.text import Text

from services.cli.cells import cell, escape_controls

__all__ = ["Output", "Waiting", "plain_lines"]

COLUMN_GAP = "   "
"""Between the columns of a plain table."""

_STATUS_STYLE = {
    "RUNNING": "green",
    "PENDING": "yellow",
    "TERMINATED": "dim",
    "CANCELLED": "dim",
    "ERROR": "red",
    "LOST": "red",
    "ALIVE": "green",
}


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def plain_lines(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Returns ``header`` and ``rows`` (one-line cells) as aligned lines without trailing blanks."""
    widths = [max(cell_len(line[i]) for line in (header, *rows)) for i in range(len(header))]
    return [
        COLUMN_GAP.join(text + " " * (width - cell_len(text)) for text, width in zip(line, widths)).rstrip()
        for line in (header, *rows)
    ]


class Waiting:
    """A long wait: a spinner on stderr while it lasts, when stderr is a terminal; else nothing."""

    def __init__(self, status: Status | None) -> None:
        self._status = status

    def update(self, message: str) -> None:
        """Shows ``message`` (untrusted parts allowed) next to the spinner."""
        if self._status is not None:
            self._status.update(Text(escape_controls(message)))


class Output:
    """Prints results as a rich table (stdout a terminal), plain columns (not a terminal), ids only
    (``quiet``, ``-q``) or JSON (``fmt="json"``, ``-o json``); progress and spinners on stderr.
    ``stdout``, ``stderr`` and the ``terminal`` flags default to this process's streams."""

    def __init__(self, fmt: str = "table", *, stdout: TextIO | None = None, stderr: TextIO | None = None,
                 terminal: bool | None = None, err_terminal: bool | None = None, width: int | None = None) -> None:
        self.fmt = fmt
        self.quiet = False
        self._stdout = stdout
        self._stderr = stderr
        self.terminal = _is_terminal(self.stdout) if terminal is None else terminal
        self.err_terminal = _is_terminal(self.stderr) if err_terminal is None else err_terminal
        self.console = Console(file=stdout, force_terminal=terminal or None, width=width, highlight=False,
                               markup=False, emoji=False)
        self.err = Console(file=stderr, force_terminal=err_terminal or None, stderr=stderr is None, highlight=False,
                           markup=False, emoji=False)

    @property
    def stdout(self) -> TextIO:
        return self._stdout or sys.stdout

    @property
    def stderr(self) -> TextIO:
        return self._stderr or sys.stderr

    @property
    def is_json(self) -> bool:
        return self.fmt == "json"

    def json(self, data: Any) -> None:
        """Prints ``data`` as indented JSON."""
        self._write(json.dumps(data, indent=2, default=str))

    def table(self, rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], title: str | None = None,
              id_key: str | None = None) -> None:
        """Prints ``rows``; ``columns`` are (key, header) pairs; ``-q`` prints ``id_key`` (default: the
        first column) of each row."""
        if self.quiet:
            key = id_key or columns[0][0]
            for row in rows:
                self._write(cell(key, row.get(key), plain=True))
            return
        if self.is_json:
            self.json(list(rows))
            return
        if not self.terminal:
            if title:
                self._write(f"{escape_controls(title)}:")
            cells = [[cell(key, row.get(key), plain=True) for key, _ in columns] for row in rows]
            for line in plain_lines([header for _, header in columns], cells):
                self._write(line)
            return
        table = Table(title=title, header_style="bold")
        for key, header in columns:
            table.add_column(header, no_wrap=key == "id", overflow="fold")
        for row in rows:
            table.add_row(*(self._text(key, row.get(key)) for key, _ in columns))
        self.console.print(table)

    def record(self, data: dict[str, Any], fields: Iterable[tuple[str, str]]) -> None:
        """Prints one object as aligned ``label  value`` lines."""
        if self.is_json:
            self.json(data)
            return
        for key, label in fields:
            if self.terminal:
                self.console.print(Text.assemble((f"{label:>16}", "bold"), "  ", self._text(key, data.get(key))),
                                   soft_wrap=True)
            else:
                self._write(f"{label:>16}  {cell(key, data.get(key), plain=True)}")

    def line(self, *parts: str | tuple[str, str]) -> None:
        """Prints one line of text parts, each a string or (string, rich style), literally; the
        styles only on a terminal."""
        pieces = [(escape_controls(p), "") if isinstance(p, str) else (escape_controls(p[0]), p[1]) for p in parts]
        if self.terminal:
            self.console.print(Text.assemble(*pieces), soft_wrap=True)
        else:
            self._write("".join(text for text, _ in pieces))

    def info(self, message: str) -> None:
        """Prints progress to stderr so stdout stays parseable (literally; its own newlines kept)."""
        self.err.print(Text(escape_controls(message, keep_newlines=True)), soft_wrap=True)

    @contextlib.contextmanager
    def waiting(self, message: str) -> Iterator[Waiting]:
        """Shows a spinner with ``message`` on stderr while the block runs, only when stderr is a terminal."""
        if not self.err_terminal:
            yield Waiting(None)
            return
        with self.err.status(Text(escape_controls(message))) as status:
            yield Waiting(status)

    def _write(self, text: str) -> None:
        print(text, file=self.stdout, flush=True)

    def _text(self, key: str, value: Any) -> Text:
        text = cell(key, value)
        return Text(text, style=_STATUS_STYLE.get(text, "") if key == "status" else "")
