"""The instance file: how ``berth`` commands find the instance that ``berth up`` runs.

``berth up`` writes ``<data dir>/instance.json`` (mode 0600) with the gateway URL,
the bus and database addresses, the bus's admin credential, and the local admin keypair; the CLI reads it when
no ``BERTH_ENDPOINT`` / ``BERTH_ACCESS_KEY`` / ``BERTH_SECRET_KEY`` are set.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

__all__ = [
    "Instance", "InstanceNotFoundError", "read_instance", "remove_instance", "write_instance", "write_private",
]

FILE_NAME = "instance.json"


class InstanceNotFoundError(RuntimeError):
    """Raised when no running instance and no endpoint settings can be found."""


class Instance(msgspec.Struct, kw_only=True):
    gateway_url: str
    nats_url: str
    pg_dsn: str
    pid: int
    access_key: str
    secret_key: str
    nats_creds: str = ""
    """The bus credential of the instance's administrator (``admin``), for the CLI's direct
    NATS commands; empty when the bus is external."""
    storage_url: str = ""
    """The storage service's data plane (uploads, downloads); the gateway also hands it out with
    each storage token."""


def write_private(path: Path, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically, readable by its owner only (mode 0600)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


def write_instance(data_dir: Path, instance: Instance) -> Path:
    """Writes the instance file atomically, readable by its owner only."""
    return write_private(data_dir / FILE_NAME, msgspec.json.format(msgspec.json.encode(instance)))


def read_instance(data_dir: Path) -> Instance:
    """Returns the instance described in ``data_dir``; raises ``InstanceNotFoundError``."""
    path = data_dir / FILE_NAME
    try:
        instance = msgspec.json.decode(path.read_bytes(), type=Instance)
    except FileNotFoundError:
        raise InstanceNotFoundError(
            f"no running Berth found ({path} is missing): start one with `ops/up` (or `berth up`), "
            "or set BERTH_ENDPOINT, BERTH_ACCESS_KEY and BERTH_SECRET_KEY"
        ) from None
    if not _alive(instance.pid):
        raise InstanceNotFoundError(f"the Berth recorded in {path} (pid {instance.pid}) is not running: start it with `ops/up`")
    return instance


def remove_instance(data_dir: Path) -> None:
    """Removes the instance file (on a clean stop)."""
    (data_dir / FILE_NAME).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
