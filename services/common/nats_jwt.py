"""NATS decentralized authentication material: nkeys and the JWTs of operator mode.

An operator signs accounts, an account signs its users (nats-io/jwt v2 claims). The server
trusts the operator and is handed the account JWTs (``resolver: MEMORY`` with
``resolver_preload``); a user JWT signed by a trusted account is valid without touching the
server, so an agent can be enrolled while NATS runs. The keys themselves are ed25519 nkeys
(the ``nkeys`` package, the one nats-py uses to read a ``.creds`` file).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import nkeys

__all__ = ["Permissions", "account_jwt", "creds_text", "new_seed", "operator_jwt", "public_key", "user_jwt"]

_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
_UNLIMITED = -1
_ROLES = {
    "operator": nkeys.PREFIX_BYTE_OPERATOR,
    "account": nkeys.PREFIX_BYTE_ACCOUNT,
    "user": nkeys.PREFIX_BYTE_USER,
}


@dataclass(frozen=True)
class Permissions:
    """Subjects a user may publish to and subscribe to (NATS wildcards ``*`` and ``>``), and
    whether it may answer requests it received (``respond``: one reply each)."""

    publish: Sequence[str] = ()
    subscribe: Sequence[str] = ()
    respond: bool = False
    deny_publish: Sequence[str] = field(default=())

    def claims(self) -> dict[str, Any]:
        pub: dict[str, Any] = {"allow": sorted(set(self.publish))}
        if self.deny_publish:
            pub["deny"] = sorted(set(self.deny_publish))
        claims: dict[str, Any] = {"pub": pub, "sub": {"allow": sorted(set(self.subscribe))}}
        if self.respond:
            claims["resp"] = {"max": 1, "ttl": 0}
        return claims


def new_seed(role: str) -> str:
    """Returns a fresh nkey seed (``S...``) for ``role``: operator, account or user."""
    return nkeys.encode_seed(os.urandom(32), _ROLES[role]).decode()


def public_key(seed: str) -> str:
    """Returns the public key (``O...``, ``A...``, ``U...``) of ``seed``."""
    return nkeys.from_seed(seed.encode()).public_key.decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _encode(claims: dict[str, Any], signer_seed: str) -> str:
    """Returns the signed JWT of ``claims``; ``jti`` is the claims' hash, as nats-io/jwt does."""
    body = dict(claims, jti="")
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
    body["jti"] = base64.b32encode(digest).rstrip(b"=").decode()
    signing_input = f"{_b64(json.dumps(_HEADER).encode())}.{_b64(json.dumps(body, sort_keys=True).encode())}"
    signature = nkeys.from_seed(signer_seed.encode()).sign(signing_input.encode())
    return f"{signing_input}.{_b64(signature)}"


def _claims(issuer_seed: str, subject: str, name: str, nats: dict[str, Any], issued_at: int | None = None) -> dict[str, Any]:
    return {"iat": int(time.time()) if issued_at is None else issued_at, "iss": public_key(issuer_seed),
            "sub": subject, "name": name, "nats": dict(nats, version=2)}


def operator_jwt(operator_seed: str, name: str, system_account: str) -> str:
    """Returns the self-signed JWT of the operator, naming its system account."""
    return _encode(_claims(operator_seed, public_key(operator_seed), name,
                           {"type": "operator", "system_account": system_account}), operator_seed)


def account_jwt(operator_seed: str, account: str, name: str, jetstream: bool,
                revocations: Mapping[str, int] | None = None, issued_at: int | None = None) -> str:
    """Returns the JWT of ``account`` signed by the operator; ``jetstream`` enables unlimited
    JetStream storage; ``revocations`` maps a user's public key to the time (seconds) up to
    which its JWTs are refused. A server takes an account JWT only when it was issued later than
    the one it has (``issued_at``, default now)."""
    storage = _UNLIMITED if jetstream else 0
    limits = {"subs": _UNLIMITED, "data": _UNLIMITED, "payload": _UNLIMITED, "imports": _UNLIMITED,
              "exports": _UNLIMITED, "wildcards": True, "conn": _UNLIMITED, "leaf": _UNLIMITED,
              "mem_storage": storage, "disk_storage": storage, "streams": _UNLIMITED if jetstream else 0,
              "consumer": _UNLIMITED if jetstream else 0}
    nats: dict[str, Any] = {"type": "account", "limits": limits, "default_permissions": {"pub": {}, "sub": {}}}
    if revocations:
        nats["revocations"] = dict(revocations)
    return _encode(_claims(operator_seed, account, name, nats, issued_at), operator_seed)


def user_jwt(account_seed: str, user: str, name: str, permissions: Permissions) -> str:
    """Returns the JWT of ``user`` (a public key) signed by the account, with ``permissions``."""
    nats = {"type": "user", "subs": _UNLIMITED, "data": _UNLIMITED, "payload": _UNLIMITED,
            **permissions.claims()}
    return _encode(_claims(account_seed, user, name, nats), account_seed)


def creds_text(jwt: str, seed: str) -> str:
    """Returns a standard ``.creds`` file: the user JWT and its seed (nats-py ``user_credentials=``)."""
    return ("-----BEGIN NATS USER JWT-----\n" f"{jwt}\n" "------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n"
            "NKEYs are sensitive and should be treated as secrets.\n\n"
            "-----BEGIN USER NKEY SEED-----\n" f"{seed}\n" "------END USER NKEY SEED------\n\n"
            "*************************************************************\n")
