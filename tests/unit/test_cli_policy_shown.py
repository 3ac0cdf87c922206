"""``berth admin policy`` tables: unlimited limits read "none", not a bare 0 that reads as "nothing allowed"."""

from __future__ import annotations

from services.cli.admin_access_cmd import policy_shown

PERMS = ["create-vfolder", "mount-in-session"]


def test_an_unlimited_policy_reads_none_everywhere() -> None:
    row = {"name": "default", "totalResourceSlots": {}, "maxConcurrentSessions": 0, "maxPendingSessionCount": 0,
           "maxPendingSessionResourceSlots": {}, "maxContainersPerSession": 0, "idleTimeout": 0,
           "maxSessionLifetime": 0, "rateLimit": 0, "maxConcurrentSubscriptions": 0, "maxVfolderCount": 0,
           "maxQuotaScopeSize": 0.0, "allowedVfolderHosts": {}}
    shown = policy_shown(row)
    assert shown["name"] == "default"
    assert {v for k, v in shown.items() if k != "name"} == {"none"}


def test_limits_are_shown_as_given_the_storage_cap_in_binary_units() -> None:
    row = {"name": "small", "totalResourceSlots": {"cpu": "8"}, "maxConcurrentSessions": 3, "idleTimeout": 600,
           "rateLimit": 30000, "maxQuotaScopeSize": 10 * 1024**3, "allowedVfolderHosts": {"local": PERMS}}
    shown = policy_shown(row)
    assert (shown["totalResourceSlots"], shown["maxConcurrentSessions"], shown["idleTimeout"]) == ({"cpu": "8"}, 3, 600)
    assert shown["rateLimit"] == 30000 and shown["maxSessionLifetime"] == "none"
    assert shown["maxQuotaScopeSize"] == "10.0 GiB"
    assert shown["allowedVfolderHosts"] == {"local": "create-vfolder+mount-in-session"}
    assert row["maxQuotaScopeSize"] == 10 * 1024**3, "the API's row is left as it was (-o json prints it)"
