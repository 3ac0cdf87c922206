"""The storage tokens' signing key: 32 random bytes in ``BERTH_STORAGE_KEY_FILE`` (default
``<data dir>/storage.key``, mode 0600), created by the storage service at its first start and
read by the gateway."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from contracts.storage_token import KEY_BYTES, new_key
from services.common.settings import Settings

__all__ = ["ensure_key", "key_path"]


def key_path(settings: Settings) -> Path:
    return Path(settings.storage_key_file) if settings.storage_key_file else Path(settings.data_dir) / "storage.key"


def ensure_key(path: Path) -> bytes:
    """Returns the key in ``path``, creating it (0600, atomically: never a partial key) when
    missing; raises ``ValueError`` for a key that is too short or readable by others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(new_key())
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # another process made it first: keep theirs
        os.unlink(tmp)
    if path.stat().st_mode & 0o077:
        raise ValueError(f"the storage key {path} is readable by others (chmod 600 it)")
    key = path.read_bytes()
    if len(key) < KEY_BYTES:
        raise ValueError(f"the storage key {path} is shorter than {KEY_BYTES} bytes")
    return key
