"""Composition root of the storage service: volumes from ``BERTH_STORAGE_VOLUMES``, the token key,
the folder-event consumers (one per volume, ``flow.py``), the HTTP data plane on
``BERTH_STORAGE_BIND``, the periodic usage measure and the expiry of stale uploads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable

from services.common.bus import ensure_streams
from services.common.flow import consume, open_broker
from services.common.kernel_user import kernel_user
from services.common.report_ids import ReportIds
from services.common.settings import Settings
from services.common.volumes import parse_volumes
from services.common.waiting import first_of
from services.storage.app import build_app
from services.storage.context import StorageContext
from services.storage.flow import FOLDERS
from services.storage.keys import ensure_key, key_path
from services.storage.provisioning import Provisioner
from services.storage.quota import Reservations
from services.storage.reporting import Reporter
from services.storage.server import bind, new_event_loop, parse_bind, serving
from services.storage.tus import report_uploaded
from services.storage.uploads import UploadStore
from services.storage.usage import UsageMeter
from services.storage.volume import PosixVolume

__all__ = ["READY_LINE", "run_storage"]

log = logging.getLogger(__name__)

READY_LINE = "Berth storage: {url}"
"""What the service prints once its data plane answers (``berth up`` reads the URL from it)."""
EXPIRY_INTERVAL = 600.0


def open_volumes(settings: Settings) -> dict[str, PosixVolume]:
    """Returns the volumes of ``BERTH_STORAGE_VOLUMES``, their directories created; folders belong
    to the kernel user when the service runs as root."""
    owner = None
    if os.geteuid() == 0:
        user = kernel_user(settings.kernel_user)
        owner = (user.uid, user.gid)
    return {name: PosixVolume(name, root, owner) for name, root in
            parse_volumes(settings.storage_volumes, settings.data_dir).items()}


async def _expire_uploads(stores: list[UploadStore], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for store in stores:
            removed = await asyncio.to_thread(store.expire, time.time())
            if removed:
                log.info("removed %d expired uploads from %s", removed, store.volume.name)
        with contextlib.suppress(asyncio.TimeoutError):
            async with asyncio.timeout(EXPIRY_INTERVAL):
                await stop.wait()


async def run_storage(settings: Settings, stop: asyncio.Event, ready: Callable[[str], None] | None = None) -> None:
    """Runs the storage service until ``stop`` is set; calls ``ready(url)`` once the data plane answers."""
    if not settings.nats_url:
        raise ValueError("the storage service needs BERTH_NATS_URL")
    if settings.storage_usage_interval <= 0 or settings.storage_upload_ttl <= 0:
        raise ValueError("BERTH_STORAGE_USAGE_INTERVAL and BERTH_STORAGE_UPLOAD_TTL must be positive")
    host, port = parse_bind(settings.storage_bind)
    key = ensure_key(key_path(settings))
    volumes = open_volumes(settings)
    broker = open_broker(settings.nats_url, "berth-storage", settings.nats_creds or None)
    nc = await broker.connect()
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        reporter = Reporter(js, ReportIds.of_credentials(settings.nats_creds or None))
        meter = UsageMeter(reporter)
        reservations = Reservations()
        uploads = {name: UploadStore(v, reservations, settings.storage_upload_ttl) for name, v in volumes.items()}
        ctx = StorageContext(volumes=volumes, uploads=uploads, key=key, reporter=reporter, meter=meter)
        await broker.start()
        for store in uploads.values():  # sealed before a crash: reported again (stored once)
            for sealed in store.recovered:
                report_uploaded(ctx, store, sealed)
        tasks = [asyncio.create_task(consume(broker, js, FOLDERS, Provisioner(v, reporter, meter, uploads[name]), stop,
                                             volume=name), name=f"storage-{name}") for name, v in volumes.items()]
        tasks.append(asyncio.create_task(meter.run(list(volumes.values()), settings.storage_usage_interval, stop)))
        tasks.append(asyncio.create_task(_expire_uploads(list(uploads.values()), stop)))
        try:
            async with serving(build_app(ctx), bind(host, port)) as url:
                log.info("storage serving %s at %s", ", ".join(f"{n}={v.root}" for n, v in volumes.items()), url)
                if ready is not None:
                    ready(url)
                await first_of(stop, *tasks)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(asyncio.TimeoutError):
                async with asyncio.timeout(10):
                    await meter.settle()
                async with asyncio.timeout(10):
                    await reporter.flush()
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception():
                raise task.exception()  # type: ignore[misc]
    finally:
        await broker.stop()


def main() -> None:
    """Runs the storage service from ``BERTH_*`` settings until SIGINT or SIGTERM."""
    from services.common.entrypoint import run_until_signalled

    async def serve(settings: Settings, stop: asyncio.Event) -> None:
        await run_storage(settings, stop, lambda url: print(READY_LINE.format(url=url), flush=True))

    run_until_signalled("storage", serve, needs=("nats_url",), loop_factory=new_event_loop)
