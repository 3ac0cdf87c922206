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

import json
import os
from dataclasses import dataclass
from pathlib import Path

from services.common import nats_jwt
from services.common.bus_identities import agent_identity, permissions

__all__ = ["BusTrust"]

_TRUST = "trust.json"
_CONFIG = "server.conf"
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


@dataclass(frozen=True)
class BusTrust:
    directory: Path
    operator_seed: str
    account_seed: str
    system_seed: str

    @classmethod
    def load_or_create(cls, directory: Path) -> BusTrust:
        """Returns the trust kept in ``directory``, creating its keys and server config when new."""
        directory = _private_dir(Path(directory))
        path = directory / _TRUST
        if path.exists():
            seeds = json.loads(path.read_text())
            trust = cls(directory, seeds["operator"], seeds["account"], seeds["system"])
        else:
            trust = cls(directory, nats_jwt.new_seed("operator"), nats_jwt.new_seed("account"),
                        nats_jwt.new_seed("account"))
            write_private(path, json.dumps({"operator": trust.operator_seed, "account": trust.account_seed,
                                            "system": trust.system_seed}).encode())
        trust.write_server_config()
        return trust

    @classmethod
    def load(cls, directory: Path) -> BusTrust:
        """Returns the existing trust of ``directory``; raises ``FileNotFoundError`` when it has none."""
        if not (Path(directory) / _TRUST).is_file():
            raise FileNotFoundError(f"no bus trust in {directory} (berth up creates it on its first start)")
        return cls.load_or_create(directory)

    @property
    def account(self) -> str:
        return nats_jwt.public_key(self.account_seed)

    @property
    def server_config(self) -> Path:
        """The ``nats-server`` config file (``-c``) that enables this trust."""
        return self.directory / _CONFIG

    def write_server_config(self) -> Path:
        system = nats_jwt.public_key(self.system_seed)
        accounts = {
            self.account: nats_jwt.account_jwt(self.operator_seed, self.account, _ACCOUNT, jetstream=True),
            system: nats_jwt.account_jwt(self.operator_seed, system, _SYSTEM, jetstream=False),
        }
        preload = "\n".join(f'  {key}: "{jwt}"' for key, jwt in accounts.items())
        text = (f'operator: "{nats_jwt.operator_jwt(self.operator_seed, "berth", system)}"\n'
                f"system_account: {system}\nresolver: MEMORY\nresolver_preload: {{\n{preload}\n}}\n")
        return write_private(self.server_config, text.encode())

    def issue(self, identity: str, path: Path) -> Path:
        """Writes a new credential of ``identity`` to ``path`` (0600); returns ``path``."""
        seed = nats_jwt.new_seed("user")
        jwt = nats_jwt.user_jwt(self.account_seed, nats_jwt.public_key(seed), identity, permissions(identity))
        return write_private(Path(path), nats_jwt.creds_text(jwt, seed).encode())

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
        return str(self.directory / _CREDS / (agent_identity("AGENT_ID").replace("AGENT_ID", "{agent_id}") + ".creds"))
