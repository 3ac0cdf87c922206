"""The bus identities' permissions (pure): least privilege as written, and the JWTs that carry them."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import nkeys
import pytest

from contracts.subjects import SubjectError
from services.common import nats_jwt
from services.common.bus import credentials_identity
from services.common.bus_trust import MAX_CONTROL_LINE
from services.common.bus_identities import ADMIN, SERVICES, agent_identity, inbox_prefix, permissions

SHARED_BY_AGENTS = {"$JS.API.INFO", "$JS.API.STREAM.INFO.KV_agent_heartbeats", "$JS.FC.EVENTS.>"}
"""What an agent may publish that names no agent: account info, the bucket's lookup, and flow-control
answers of its ordered recall consumer."""


def _covers(pattern: str, subject: str) -> bool:
    """Returns True when the NATS wildcard ``pattern`` matches ``subject``."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


def test_an_agent_publishes_and_subscribes_only_to_its_own_subjects() -> None:
    granted = permissions(agent_identity("gpu-7"))
    for subject in (*granted.publish, *granted.subscribe):
        assert subject in SHARED_BY_AGENTS or "gpu-7" in subject.split(".") or "agent-gpu-7" in subject \
            or subject.startswith(f"{inbox_prefix(agent_identity('gpu-7'))}."), subject
    assert granted.respond
    for other in ("rp.agent.gpu-8.agent_started", "rp.agent.gpu-7.made-up", "rp.agent.gpu-7.agent_started.x",
                  "ev.agent.gpu-7.KernelAssigned", "exec.agent.gpu-8",
                  "$KV.agent_heartbeats.gpu-8", "io.agent.gpu-8.k.r", "$JS.API.CONSUMER.CREATE.EVENTS"):
        assert not any(_covers(p, other) for p in (*granted.publish, *granted.subscribe)), other


def test_only_the_relay_and_admin_may_publish_events() -> None:
    for identity in (*SERVICES, agent_identity("a")):
        may = any(_covers(p, "ev.session.s1.Requested") for p in permissions(identity).publish)
        assert may == (identity == "relay"), identity
    assert any(_covers(p, "ev.session.s1.Requested") for p in permissions(ADMIN).publish)


def test_no_service_may_delete_or_purge_a_stream() -> None:
    for identity in SERVICES:
        for subject in ("$JS.API.STREAM.DELETE.EVENTS", "$JS.API.STREAM.PURGE.EVENTS", "$JS.API.STREAM.MSG.DELETE.EVENTS"):
            assert not any(_covers(p, subject) for p in permissions(identity).publish), (identity, subject)


def test_each_identity_reads_replies_under_its_own_inbox_only() -> None:
    for identity in (*SERVICES, agent_identity("a")):
        inboxes = [s for s in permissions(identity).subscribe if s.startswith("_INBOX")]
        assert inboxes == [f"{inbox_prefix(identity)}.>"], identity


def test_unknown_identities_and_bad_agent_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown bus identity"):
        permissions("root")
    with pytest.raises(SubjectError):
        permissions("agent-a.b")


def test_a_user_jwt_carries_its_permissions_and_the_account_signature(tmp_path: Path) -> None:
    account, user = nats_jwt.new_seed("account"), nats_jwt.new_seed("user")
    jwt = nats_jwt.user_jwt(account, nats_jwt.public_key(user), "agent-a", permissions(agent_identity("a")))
    header, claims, signature = jwt.split(".")
    body = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    assert body["iss"] == nats_jwt.public_key(account) and body["sub"] == nats_jwt.public_key(user)
    assert body["nats"]["type"] == "user" and "rp.agent.a.agent_started" in body["nats"]["pub"]["allow"]
    assert body["nats"]["resp"] == {"max": 1, "ttl": 0}
    verifier = nkeys.from_seed(account.encode())
    assert verifier.verify(f"{header}.{claims}".encode(), base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    creds = tmp_path / "a.creds"
    creds.write_text(nats_jwt.creds_text(jwt, user))
    assert credentials_identity(creds) == "agent-a"
    (tmp_path / "not.creds").write_text("nope")
    with pytest.raises(ValueError, match="not a NATS credentials file"):
        credentials_identity(tmp_path / "not.creds")


def test_every_identity_connects_within_the_servers_control_line() -> None:
    """A client's CONNECT line carries its user JWT; over the server's ``max_control_line`` the
    server drops the connection and the client retries for ever (seen when the services'
    permissions grew past the 4096-byte default)."""
    account, user = nats_jwt.new_seed("account"), nats_jwt.new_seed("user")
    for identity in (*SERVICES, ADMIN, agent_identity("a" * 64)):
        jwt = nats_jwt.user_jwt(account, nats_jwt.public_key(user), identity, permissions(identity))
        assert len(jwt) + 1024 < MAX_CONTROL_LINE, identity  # the rest of CONNECT: signature, name, options


def test_the_storage_service_publishes_its_reports_and_no_agents_or_events() -> None:
    granted = permissions("storage").publish
    assert any(_covers(p, "rp.storage.local.folder_provisioned") for p in granted)
    for other in ("rp.agent.a1.kernel_running", "ev.vfolder.x.provisioned", "exec.agent.a1"):
        assert not any(_covers(p, other) for p in granted), other
