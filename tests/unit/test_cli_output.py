"""The CLI's output layer: plain columns when stdout is not a terminal, rich tables when it is,
``-q``, JSON, literal printing of untrusted text and escaped control characters."""

from __future__ import annotations

import io
import json
import re

import pytest

from services.cli.cells import cell, escape_controls
from services.cli.output import Output, Waiting
from services.cli.projections_cmd import RebuildReport
from services.cli.session_cmd import SESSION_COLUMNS, SESSION_FIELDS

ANSI_SGR = re.compile(r"\x1b\[[0-9;]*m")
BOX = set("─│┃━┏┓┗┛┡┩└┘┌┐╇╈┳┻┼")


def make(terminal: bool = False, fmt: str = "table") -> tuple[Output, io.StringIO, io.StringIO]:
    stdout, stderr = io.StringIO(), io.StringIO()
    return Output(fmt, stdout=stdout, stderr=stderr, terminal=terminal, err_terminal=terminal, width=300), stdout, stderr


def session(n: int, **fields: object) -> dict[str, object]:
    row: dict[str, object] = {"id": f"{n:032x}", "name": f"s{n}", "status": "RUNNING", "image": "berth/python:latest",
                              "requestedSlots": {"cpu": "1", "mem": str(1024**3)}, "agentIds": ["local"],
                              "createdAt": "2024-05-01T10:00:00.123456+00:00"}
    row.update(fields)
    return row


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[31mred", "\\x1b[31mred"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("nul\x00 del\x7f", "nul\\x00 del\\x7f"),
        ("csi\x9b nel\x85", "csi\\x9b nel\\x85"),
        ("evil\u202egpj.exe", "evil\\u202egpj.exe"),
        ("isolate\u2066x\u2069 ls\u2028ps\u2029", "isolate\\u2066x\\u2069 ls\\u2028ps\\u2029"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
        ("[/]x [red]y :smile: é 名前 \\x1b", "[/]x [red]y :smile: é 名前 \\x1b"),
    ],
)
def test_control_characters_are_escaped_and_everything_else_kept(raw: str, shown: str) -> None:
    assert escape_controls(raw) == shown


def test_messages_may_keep_their_newlines() -> None:
    assert escape_controls("one\n\x1b]0;title\x07two", keep_newlines=True) == "one\n\\x1b]0;title\\x07two"


def test_cells_are_one_line_and_plain_cells_have_full_values_without_spaces_of_their_own() -> None:
    slots = {"cpu": "2", "mem": str(1024**3 + 1)}
    assert cell("requestedSlots", slots) == "cpu=2 mem=1.0GiB"
    assert cell("requestedSlots", slots, plain=True) == f"cpu=2,mem={1024**3 + 1}"
    assert cell("requestedSlots", {"mem": str(3 * 512 * 1024**2)}, plain=True) == "mem=1.5GiB"
    assert cell("createdAt", "2024-05-01T10:00:00.5+00:00") == "2024-05-01 10:00:00"
    assert cell("createdAt", "2024-05-01T10:00:00.5+00:00", plain=True) == "2024-05-01T10:00:00.5+00:00"
    assert cell("agentIds", ["a", "b"], plain=True) == "a,b"
    assert [cell("x", v) for v in (None, "", [], {})] == ["-"] * 4
    assert cell("x", 0) == "0" and cell("x", False) == "False"


def test_slot_amounts_are_shown_without_trailing_zeros() -> None:
    """Two kernels of cpu=0.5 hold cpu=1 (their sum was shown as 1.0); what is not a number is shown as given."""
    assert cell("requestedSlots", {"cpu": "1.0", "cuda.shares": "0.50", "mem": str(512 * 1024**2)}) == \
        "cpu=1 cuda.shares=0.5 mem=512MiB"
    assert cell("requestedSlots", {"cpu": "1E+1", "cuda.device": "2"}, plain=True) == "cpu=10,cuda.device=2"
    assert cell("requestedSlots", {"cpu": "many", "x": "NaN"}) == "cpu=many x=NaN"


def test_not_a_terminal_tables_are_plain_aligned_columns_one_line_per_row() -> None:
    out, stdout, _ = make(terminal=False)
    long_image = "registry.example.com:5000/" + "team/" * 30 + "image:tag"
    rows = [session(1, image=long_image), session(2, name="two\nlines", agentIds=[], status="PENDING")]
    out.table(rows, SESSION_COLUMNS)
    lines = stdout.getvalue().splitlines()
    assert len(lines) == 3
    assert not BOX & set(stdout.getvalue()) and "\x1b" not in stdout.getvalue()
    assert lines[0].split() == [header for _, header in SESSION_COLUMNS]
    fields = [line.split() for line in lines[1:]]
    assert [f[0] for f in fields] == [f"{1:032x}", f"{2:032x}"]  # full ids: awk '{print $1}'
    assert fields[0][3] == long_image and fields[1][1] == "two\\nlines" and fields[1][5] == "-"
    assert all(len(f) == len(SESSION_COLUMNS) for f in fields)
    status_at = {line.index(row[2]) for line, row in zip(lines[1:], fields)}
    assert status_at == {lines[0].index("STATUS")}, "columns are aligned"


def test_a_terminal_gets_a_rich_table_that_prints_markup_literally() -> None:
    out, stdout, _ = make(terminal=True)
    out.table([session(1, name="[/]x"), session(2, name="[red]x\x1b[2J")], SESSION_COLUMNS)
    text = ANSI_SGR.sub("", stdout.getvalue())
    assert "[/]x" in text and "[red]x\\x1b[2J" in text
    assert "\x1b" not in text, "only rich's own colour codes may reach the terminal"
    assert BOX & set(text)


def test_quiet_prints_only_the_ids() -> None:
    out, stdout, _ = make(terminal=True)
    out.quiet = True
    out.table([session(1), session(2)], SESSION_COLUMNS)
    assert stdout.getvalue() == f"{1:032x}\n{2:032x}\n"
    out, stdout, _ = make(fmt="json")
    out.quiet = True
    out.table([{"name": "lab", "description": "x"}], [("name", "NAME"), ("description", "DESCRIPTION")])
    assert stdout.getvalue() == "lab\n"


def test_json_is_exact_and_escapes_controls_itself() -> None:
    out, stdout, _ = make(fmt="json")
    rows = [session(1, name="[/]x\x1b\ud800")]
    out.table(rows, SESSION_COLUMNS)
    assert "\x1b" not in stdout.getvalue()
    assert json.loads(stdout.getvalue()) == rows


@pytest.mark.parametrize("terminal", [False, True])
def test_records_print_each_field_on_one_line_literally(terminal: bool) -> None:
    out, stdout, _ = make(terminal=terminal)
    data = session(1, statusReason="[bold]boom\n\x1b[31mred", statusHistory={"PENDING": "2024-05-01T10:00:00+00:00"})
    out.record(data, SESSION_FIELDS)
    text = ANSI_SGR.sub("", stdout.getvalue())
    assert len(text.splitlines()) == len(SESSION_FIELDS)
    assert "[bold]boom\\n\\x1b[31mred" in text and "\x1b" not in text


def test_info_and_lines_are_literal() -> None:
    out, stdout, stderr = make(terminal=False)
    out.info("session [/]x: \x1b[31mfailed\nsecond line")
    out.line("  1  ", ("[b]type", "bold"), " \x1b")
    assert stderr.getvalue() == "session [/]x: \\x1b[31mfailed\nsecond line\n"
    assert stdout.getvalue() == "  1  [b]type \\x1b\n"


def test_a_spinner_only_when_stderr_is_a_terminal() -> None:
    out, _, stderr = make(terminal=False)
    with out.waiting("session x: PENDING") as waiting:
        waiting.update("session x: \x1b[2JRUNNING")
    assert stderr.getvalue() == ""
    out, _, stderr = make(terminal=True)
    with out.waiting("session x: PENDING") as waiting:
        waiting.update("session x: \x1b[2JRUNNING")
    assert "session x" in stderr.getvalue() and "\x1b[2J" not in stderr.getvalue()


def test_a_rebuilds_progress_is_a_line_at_most_every_few_seconds_when_stderr_is_not_a_terminal() -> None:
    out, _, stderr = make(terminal=False)
    now = [100.0]
    report = RebuildReport(out, Waiting(None), clock=lambda: now[0])
    for applied, at in ((5_000, 101.0), (10_000, 105.5), (15_000, 106.0), (20_000, 111.0)):
        now[0] = at
        report(applied, 20_000)
    assert stderr.getvalue().splitlines() == [
        "rebuilt 10,000 of 20,000 events (50 %), 1,818 events/s",
        "rebuilt 20,000 of 20,000 events (100 %), 1,818 events/s",
    ]

