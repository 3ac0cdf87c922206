"""The instance's bus trust: its operator and account keys, the server's auth config, credentials.

Kept in one directory (``<data dir>/nats/auth`` under ``berth up``), 0700, every file 0600:

* ``trust.json`` — the operator, account and system-account seeds (the account seed signs users);
* ``server.conf`` — the ``nats-server`` include: operator JWT, system account, ``resolver: MEMORY``
  with the account JWTs preloaded;
* ``creds/<identity>.creds`` — a credential per identity (``bus_identities``), issued on demand.

Created on first use, so a fresh machine needs no setup. Issuing a credential (``issue``) needs
the account seed only: the server accepts it at once, without a reload.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from services.common import nats_jwt
from services.common.bus_identities import AGENT_IDENTITY, agent_identity, permissions

__all__ = ["BusTrust"]

_TRUST = "trust.json"
_CONFIG = "server.conf"
MAX_CONTROL_LINE = 32768
"""The server's limit on a protocol line (default 4096): a client's CONNECT carries its user JWT,
whose permissions list every subject the identity may use (a service's is about 6 KB)."""
_CREDS = "creds"
_ACCOUNT = "BERTH"
_SYSTEM = "SYS"


def write_private(path: Path, data: bytes) -> Path:
    """Replaces ``path`` with ``data`` in a file created 0600 (never readable by others, even briefly)."""
    staged = path.with_name(f".{path.name}.new")
    staged.unlink(missing_ok=True)
    staged.touch(mode=0o600, exist_ok=False)
    staged.write_bytes(data)
    staged.replace(path)
    return path


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


class BusTrust:
    """The trust kept in one directory (``load_or_create`` / ``load``)."""

    def __init__(self, directory: Path, state: dict[str, Any]) -> None:
        self.directory = directory
        self._state = state
        self.operator_seed: str = state["operator"]
        self.account_seed: str = state["account"]
        self.system_seed: str = state["system"]

    @classmethod
    def load_or_create(cls, directory: Path) -> BusTrust:
        """Returns the trust kept in ``directory``, creating its keys and server config when new."""
        directory = _private_dir(Path(directory))
        path = directory / _TRUST
        if path.exists():
            trust = cls(directory, json.loads(path.read_text()))
        else:
            operator, system = nats_jwt.new_seed("operator"), nats_jwt.new_seed("account")
            system_key = nats_jwt.public_key(system)
            trust = cls(directory, {
                "operator": operator, "account": nats_jwt.new_seed("account"), "system": system,
                # signed once: a server reloads a changed account, never a changed operator
                "operator_jwt": nats_jwt.operator_jwt(operator, "berth", system_key),
                "system_jwt": nats_jwt.account_jwt(operator, system_key, _SYSTEM, jetstream=False),
                "issued": {}, "revoked": {},
            })
            trust._save()
        trust.write_server_config()
        return trust

    @classmethod
    def load(cls, directory: Path) -> BusTrust:
        """Returns the existing trust of ``directory``; raises ``FileNotFoundError`` when it has none."""
        if not (Path(directory) / _TRUST).is_file():
            raise FileNotFoundError(f"no bus trust in {directory} (berth up creates it on its first start)")
        return cls.load_or_create(directory)

    def _save(self) -> None:
        write_private(self.directory / _TRUST, json.dumps(self._state, indent=1).encode())

    @contextlib.contextmanager
    def _changing(self) -> Iterator[dict[str, Any]]:
        """Yields the state as on disk now, under an exclusive lock, and saves it afterwards: ``berth
        up`` and an ``enrol`` or ``revoke`` of the CLI may change it at the same time."""
        with open(self.directory / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._state = json.loads((self.directory / _TRUST).read_text())
            yield self._state
            self._save()

    @property
    def account(self) -> str:
        return nats_jwt.public_key(self.account_seed)

    @property
    def server_config(self) -> Path:
        """The ``nats-server`` config file (``-c``) that enables this trust."""
        return self.directory / _CONFIG

    def write_server_config(self) -> Path:
        """Writes the server's auth include: the operator, the system account, and the account
        with its revocations (a running server takes a change on reload: SIGHUP)."""
        system = nats_jwt.public_key(self.system_seed)
        # a running server ignores an account JWT not issued after the one it has: never the same second
        with self._changing() as state:
            issued_at = max(int(time.time()), state.get("account_issued_at", 0) + 1)
            state["account_issued_at"] = issued_at
        accounts = {
            self.account: nats_jwt.account_jwt(self.operator_seed, self.account, _ACCOUNT, jetstream=True,
                                               revocations=self._state["revoked"], issued_at=issued_at),
            system: self._state["system_jwt"],
        }
        preload = "\n".join(f'  {key}: "{jwt}"' for key, jwt in accounts.items())
        text = (f'operator: "{self._state["operator_jwt"]}"\n'
                f"system_account: {system}\nresolver: MEMORY\nresolver_preload: {{\n{preload}\n}}\n"
                f"max_control_line: {MAX_CONTROL_LINE}\n")
        return write_private(self.server_config, text.encode())

    def issue(self, identity: str, path: Path) -> Path:
        """Writes a new credential of ``identity`` to ``path`` (0600) and records its key (for
        ``revoke``); returns ``path``."""
        seed = nats_jwt.new_seed("user")
        user = nats_jwt.public_key(seed)
        jwt = nats_jwt.user_jwt(self.account_seed, user, identity, permissions(identity))
        with self._changing() as state:
            state["issued"].setdefault(identity, []).append(user)
        return write_private(Path(path), nats_jwt.creds_text(jwt, seed).encode())

    def revoke(self, identity: str) -> int:
        """Revokes every credential issued to ``identity`` so far (recorded in the account JWT
        of the server config); returns how many. The server applies it on its next reload."""
        with self._changing() as state:
            keys = state["issued"].pop(identity, [])
            # every JWT of these keys issued up to the next second: one issued this very second
            # included (a key is never issued again: a new credential has a new key)
            state["revoked"].update(dict.fromkeys(keys, int(time.time()) + 1))
        (self.directory / _CREDS / f"{identity}.creds").unlink(missing_ok=True)
        self.write_server_config()
        return len(keys)

    def credentials(self, identity: str) -> Path:
        """Returns the instance's own credential of ``identity`` (``creds/<identity>.creds``),
        issued when missing."""
        path = _private_dir(self.directory / _CREDS) / f"{identity}.creds"
        return path if path.is_file() else self.issue(identity, path)

    def agent_credentials(self, agent_ids: list[str]) -> str:
        """Issues the missing credentials of the agents ``agent_ids``; returns their path as a
        ``Settings.nats_creds`` template (``.../agent-{agent_id}.creds``)."""
        for agent_id in agent_ids:
            self.credentials(agent_identity(agent_id))
        return str(self.directory / _CREDS / f"{AGENT_IDENTITY}.creds")
