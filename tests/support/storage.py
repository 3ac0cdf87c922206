"""A storage service's data plane in the test process: volumes under a temp dir, a fresh key,
reports to the test bus, served by uvicorn on a free port."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from nats.js import JetStreamContext

from contracts.storage_token import StorageOp, mint_token, new_key
from contracts.vfolder import new_folder_id
from services.storage.app import build_app
from services.storage.context import StorageContext
from services.storage.quota import Reservations
from services.storage.reporting import Reporter
from services.storage.server import bind, serving
from services.storage.uploads import UploadStore
from services.storage.usage import UsageMeter
from services.storage.volume import PosixVolume

__all__ = ["RunningStorage", "fds_naming", "running_storage"]


@dataclass
class RunningStorage:
    url: str
    ctx: StorageContext
    volume: PosixVolume

    def token(self, folder: str, path: str, op: StorageOp, *, user: str = "alice", max_bytes: int = 0,
              dst: str = "", scope: str = "user:alice", ttl: int = 900) -> str:
        return mint_token(self.ctx.key, folder=folder, volume=self.volume.name, path=path, op=op, user=user,
                          now=time.time(), ttl=ttl, max_bytes=max_bytes, dst=dst, quota_scope=scope)[0]

    def new_folder(self) -> str:
        folder = new_folder_id()
        self.volume.create(folder)
        return folder


def make_context(root: Path, js: JetStreamContext | None) -> StorageContext:
    volume = PosixVolume("local", root)
    reporter = Reporter(js)
    return StorageContext(volumes={"local": volume}, uploads={"local": UploadStore(volume, Reservations())},
                          key=new_key(), reporter=reporter, meter=UsageMeter(reporter))


@contextlib.asynccontextmanager
async def running_storage(root: Path, js: JetStreamContext | None = None,
                          ctx: StorageContext | None = None) -> AsyncIterator[RunningStorage]:
    """Serves a storage data plane on a volume ``local`` at ``root`` while the block runs."""
    ctx = ctx or make_context(root, js)
    async with serving(build_app(ctx), bind("127.0.0.1", 0)) as url:
        yield RunningStorage(url, ctx, ctx.volumes["local"])
        await ctx.meter.settle()
        await ctx.reporter.flush()


def fds_naming(root: Path) -> list[str]:
    """Returns what the open fds of this process name under ``root`` (a storage service's files left open)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed since the listing
        if target.startswith(str(root)):
            found.append(target)
    return found
