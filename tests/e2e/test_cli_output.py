"""The CLI's output for scripts and its small conveniences, against a real `berth up`: `session ls`
piped is one awk-parseable line per session, `-q`, `-o json` after the command, `berth ps`,
`berth --version`, `berth token` (a bearer token GraphQL accepts), and `session create` that stops
waiting fails."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess

import httpx
import pytest

from tests.e2e.conftest import RunningBerth

pytestmark = pytest.mark.e2e


def test_piped_session_ls_is_one_awk_parseable_line_per_session(berth_up: RunningBerth) -> None:
    ids = [berth_up.berth("session", "create", "-n", f"job-{n}").stdout.strip() for n in range(3)]
    listing = berth_up.berth("session", "ls").stdout  # stdout is a pipe here
    lines = listing.splitlines()
    assert len(lines) == 1 + len(ids), listing
    assert lines[0].split() == ["ID", "NAME", "STATUS", "IMAGE", "SLOTS", "AGENTS", "CREATED"]
    assert not set("─│┃━┏┓└┘┌┐") & set(listing)
    awk = subprocess.run(["awk", "NR > 1 { print $1, $2, $3, $6 }"], input=listing, capture_output=True, text=True,
                         check=True)
    assert awk.stdout.splitlines() == [f"{sid} job-{n} RUNNING local" for n, sid in enumerate(ids)]

    assert berth_up.berth("ps", "-q").stdout.split() == ids
    assert [row["id"] for row in json.loads(berth_up.berth("session", "ls", "-o", "json").stdout)] == ids
    assert [row["id"] for row in json.loads(berth_up.berth("ps", "--output", "json", "-s", "running").stdout)] == ids
    assert berth_up.berth("agents", "ls", "-q").stdout == "local\n"
    assert berth_up.berth("--version").stdout == f"berth {importlib.metadata.version('berth')}\n"


def test_token_is_a_bearer_token_graphql_accepts(berth_up: RunningBerth) -> None:
    session_id = berth_up.berth("session", "create", "--no-wait").stdout.strip()
    token = berth_up.berth("token").stdout.strip()
    assert token and "\n" not in token
    url = str(berth_up.instance()["gateway_url"]).rstrip("/")
    url = url if url.endswith("/graphql") else url + "/graphql"
    response = httpx.post(url, json={"query": "{ sessions { edges { id } } }"},
                          headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200, response.text
    assert session_id in {edge["id"] for edge in response.json()["data"]["sessions"]["edges"]}
    as_json = json.loads(berth_up.berth("token", "-o", "json").stdout)
    assert as_json["authorization"] == f"Bearer {as_json['token']}"


def test_session_create_that_stops_waiting_before_running_fails(berth_up: RunningBerth) -> None:
    """A script's `berth session create && berth exec ...` must not go on when the session did not start in
    ``--timeout``: the command says so and exits 1 (it exited 0), the id still on stdout, the session kept."""
    done = berth_up.berth("session", "create", "-r", "cpu=100", "--timeout", "1", check=False)  # bigger than the agent
    assert done.returncode == 1, (done.stdout, done.stderr)
    session_id = done.stdout.strip()
    assert session_id and "stays requested" in done.stderr and f"berth session rm {session_id}" in done.stderr
    assert [row["status"] for row in berth_up.berth_json("session", "ls") if row["id"] == session_id] == ["PENDING"]
