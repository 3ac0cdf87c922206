"""Hypothesis: whatever strings the server returns (session names, images, reasons, event payloads,
tenancy names; also old or hostile data the gateway's input limits no longer let in), the output
of ``session ls``, ``session info`` and ``events`` never crashes, keeps one line per row when piped,
and shows each string literally, with only its control characters escaped."""

from __future__ import annotations

import io
import json
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.cli import events_cmd
from services.cli.cells import escape_controls
from services.cli.output import Output
from services.cli.session_cmd import KERNEL_COLUMNS, SESSION_COLUMNS, SESSION_FIELDS

ANSI_SGR = re.compile(r"\x1b\[[0-9;]*m")
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]")
HOSTILE = [*"[]/\\\x1b\n\r\t\x00\x07\x85\x9b\u202e\u2066\u2028\ud800:",
           "[/]", "[red]", "[/red]", "[bold]", "[link=http://x]", "[@click=x]", "\x1b[31m", "\x1b]0;t\x07", ":smile:"]


def hostile_text(max_size: int) -> st.SearchStrategy[str]:
    """Any Unicode (lone surrogates included) mixed with markup tags and terminal escapes."""
    pieces = st.one_of(st.characters(exclude_categories=()), st.sampled_from(HOSTILE))
    return st.lists(pieces, max_size=max_size).map("".join)


texts = hostile_text(12)
short_texts = hostile_text(3)
ids = st.text("0123456789abcdef", min_size=32, max_size=32)
slots = st.dictionaries(texts, st.one_of(texts, st.integers(0, 2**64).map(str)), max_size=3)
times = st.one_of(st.none(), texts, st.datetimes().map(lambda t: t.isoformat() + "+00:00"))


@st.composite
def sessions(draw: Any) -> dict[str, Any]:
    return {
        "id": draw(ids), "name": draw(texts), "owner": draw(texts), "image": draw(texts), "sessionType": draw(texts),
        "status": draw(st.one_of(st.sampled_from(["RUNNING", "PENDING", "ERROR"]), texts)),
        "statusReason": draw(st.one_of(st.none(), texts)), "pendingReason": draw(st.one_of(st.none(), texts)),
        "domain": draw(texts), "project": draw(texts), "resourceGroup": draw(texts),
        "priority": draw(st.integers(0, 100)), "clusterSize": draw(st.integers(1, 64)),
        "requestedSlots": draw(slots), "agentIds": draw(st.lists(texts, max_size=3)),
        "createdAt": draw(times), "terminatedAt": draw(times),
        "statusHistory": draw(st.dictionaries(texts, times, max_size=3)),
        "kernels": draw(st.lists(st.fixed_dictionaries({
            "id": ids, "clusterRole": texts, "agentId": st.one_of(st.none(), texts), "status": texts,
            "containerId": st.one_of(st.none(), texts), "exitCode": st.one_of(st.none(), st.integers()),
        }), max_size=3)),
    }


@st.composite
def events(draw: Any) -> dict[str, Any]:
    payload = {"name": draw(short_texts), "image": draw(texts), "reason": draw(texts), "event_id": draw(texts)}
    return {"position": draw(st.integers(1, 10**9)), "occurredAt": draw(times), "type": draw(texts),
            "aggregateId": draw(texts), "aggregateVersion": draw(st.integers(1, 10**6)), "actor": draw(texts),
            "payload": json.dumps(payload)}


def render(terminal: bool, draw_with: Any) -> str:
    stdout = io.StringIO()
    out = Output(stdout=stdout, stderr=io.StringIO(), terminal=terminal, err_terminal=False, width=5000)
    draw_with(out)
    text = ANSI_SGR.sub("", stdout.getvalue()) if terminal else stdout.getvalue()
    assert not UNSAFE.search(text), "a control character reached the terminal"
    return text


def shown(value: str) -> str:
    return escape_controls(value) or "-"


@settings(max_examples=100, deadline=None)
@given(st.lists(sessions(), max_size=5))
def test_session_ls_never_crashes_and_prints_names_literally(rows: list[dict[str, Any]]) -> None:
    piped = render(False, lambda out: out.table(rows, SESSION_COLUMNS)).splitlines()
    assert len(piped) == 1 + len(rows), "one line per session"
    for line, row in zip(piped[1:], rows):
        assert line.split()[0] == row["id"] and f"   {shown(row['name'])}   " in line
    on_terminal = render(True, lambda out: out.table(rows, SESSION_COLUMNS))
    assert all(shown(row["name"]) in on_terminal and row["id"] in on_terminal for row in rows)


@settings(max_examples=100, deadline=None)
@given(sessions())
def test_session_info_never_crashes_and_prints_fields_literally(data: dict[str, Any]) -> None:
    def info(out: Output) -> None:  # what `berth session info` prints
        out.record(data, SESSION_FIELDS)
        out.table(data["kernels"], KERNEL_COLUMNS)

    piped = render(False, info)
    assert len(piped.splitlines()) == len(SESSION_FIELDS) + 1 + len(data["kernels"])
    on_terminal = render(True, info)
    for key in ("name", "image", "statusReason", "pendingReason", "owner"):
        if data[key]:
            assert shown(data[key]) in piped and shown(data[key]) in on_terminal


@settings(max_examples=100, deadline=None)
@given(st.lists(events(), max_size=5))
def test_events_never_crash_and_print_payloads_literally(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        row["summary"] = events_cmd._summary(row["payload"])
    for terminal in (False, True):
        listed = render(terminal, lambda out: out.table(rows, events_cmd.COLUMNS))
        followed = render(terminal, lambda out: events_cmd._print_rows(out, rows))
        assert len(followed.splitlines()) == len(rows), "one line per followed event"
        for row in rows:
            name = escape_controls(json.dumps(json.loads(row["payload"])["name"], ensure_ascii=False))
            assert f"name={name}" in followed and f"name={name}" in listed
    piped = render(False, lambda out: out.table(rows, events_cmd.COLUMNS)).splitlines()
    assert len(piped) == 1 + len(rows)


def test_events_details_are_whole_when_piped_and_cut_with_an_ellipsis_on_a_terminal() -> None:
    reason = "r" * 400
    rows = [{"position": 1, "occurredAt": None, "type": "session.terminated", "aggregateId": "s1",
             "aggregateVersion": 3, "actor": "u", "payload": json.dumps({"reason": reason})}]
    for row in rows:
        row["summary"] = events_cmd._summary(row["payload"])
    piped = render(False, lambda out: out.table(events_cmd._for(out, rows), events_cmd.COLUMNS))
    assert f'reason="{reason}"' in piped, "a script reading berth events gets the whole details"
    on_terminal = render(True, lambda out: events_cmd._print_rows(out, events_cmd._for(out, rows)))
    assert "…" in on_terminal and reason not in on_terminal
