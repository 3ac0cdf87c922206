"""``berth admin policy`` tables: unlimited limits read "none", not a bare 0 that reads as "nothing allowed"; the
storage cap in binary units on a terminal, exact when piped."""

from __future__ import annotations

import io

import pytest

from services.cli.admin_access_cmd import policy_shown
from services.cli.output import Output


def output(terminal: bool) -> Output:
    return Output(stdout=io.StringIO(), stderr=io.StringIO(), terminal=terminal, err_terminal=False)

PERMS = ["create-vfolder", "mount-in-session"]


@pytest.mark.parametrize("terminal", [True, False])
def test_an_unlimited_policy_reads_none_everywhere(terminal: bool) -> None:
    row = {"name": "default", "totalResourceSlots": {}, "maxConcurrentSessions": 0, "maxPendingSessionCount": 0,
           "maxPendingSessionResourceSlots": {}, "maxContainersPerSession": 0, "idleTimeout": 0,
           "maxSessionLifetime": 0, "rateLimit": 0, "maxConcurrentSubscriptions": 0, "maxVfolderCount": 0,
           "maxQuotaScopeSize": 0.0, "allowedVfolderHosts": {}}
    shown = policy_shown(output(terminal), row)
    assert shown["name"] == "default"
    assert {v for k, v in shown.items() if k != "name"} == {"none"}


def test_limits_are_shown_as_given_the_storage_cap_in_binary_units() -> None:
    row = {"name": "small", "totalResourceSlots": {"cpu": "8"}, "maxConcurrentSessions": 3, "idleTimeout": 600,
           "rateLimit": 30000, "maxQuotaScopeSize": 10 * 1024**3, "allowedVfolderHosts": {"local": PERMS}}
    shown = policy_shown(output(terminal=True), row)
    assert (shown["totalResourceSlots"], shown["maxConcurrentSessions"], shown["idleTimeout"]) == ({"cpu": "8"}, 3, 600)
    assert shown["rateLimit"] == 30000 and shown["maxSessionLifetime"] == "none"
    assert shown["maxQuotaScopeSize"] == "10.0 GiB"
    assert shown["allowedVfolderHosts"] == {"local": "create-vfolder+mount-in-session"}
    assert row["maxQuotaScopeSize"] == 10 * 1024**3, "the API's row is left as it was (-o json prints it)"


def test_a_piped_policy_shows_its_storage_cap_in_bytes() -> None:
    """Piped, ``berth admin policy ls`` printed ``2.9 GiB``: not the cap, where the README promises full values."""
    row = {"name": "odd", "maxQuotaScopeSize": 3_111_222_333}
    assert policy_shown(output(terminal=False), row)["maxQuotaScopeSize"] == "3111222333"
    assert policy_shown(output(terminal=True), row)["maxQuotaScopeSize"] == "2.9 GiB"
