"""The outages every service process is waiting out, on a NATS key-value bucket, so that one
health answer (the gateway's ``/healthz``) shows them all.

Each process started by ``run_until_signalled`` puts ``OUTAGES`` under ``<service>-<pid>`` in
``service_health`` every ``PUBLISH_EVERY`` seconds (and at once when they change); entries
expire ``HEALTH_TTL`` seconds after their last put, so a process that died leaves nothing
behind for long. While NATS itself is away nothing can be put: the reader, which cannot reach
NATS either, says so instead.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os

import msgspec
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from contracts.subjects import HEALTH_BUCKET
from services.common.bus import connect, stream_replicas
from services.common.transient import OUTAGES
from services.common.waiting import first_of

__all__ = ["HEALTH_TTL", "ServiceHealth", "health_bucket", "publish_health", "read_health"]

log = logging.getLogger(__name__)

HEALTH_TTL = 30.0
PUBLISH_EVERY = 5.0
CHECK_EVERY = 0.5
"""Seconds between two looks at ``OUTAGES`` (a change is put at once)."""


class ServiceHealth(msgspec.Struct, frozen=True, kw_only=True):
    """What one service process is waiting out (empty: nothing)."""

    service: str
    pid: int
    at: dt.datetime
    outages: list[str]


async def health_bucket(js: JetStreamContext) -> KeyValue:
    """Returns the health bucket, creating it when missing."""
    try:
        return await js.key_value(HEALTH_BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(KeyValueConfig(bucket=HEALTH_BUCKET, history=1, ttl=HEALTH_TTL,
                                                        replicas=stream_replicas()))


async def publish_health(url: str, service: str, stop: asyncio.Event) -> None:
    """Puts this process's outages in the bucket until ``stop`` is set, then deletes its entry."""
    key = f"{service}-{os.getpid()}"
    while True:
        try:
            nc = await connect(url, f"berth-{service}-health")
            break
        except Exception as exc:  # noqa: BLE001 - NATS not up yet: the service waits for it too
            log.debug("cannot connect to put the health of %s: %s", key, exc)
            await first_of(stop, timeout=PUBLISH_EVERY)
            if stop.is_set():
                return
    try:
        kv: KeyValue | None = None
        last: list[str] | None = None
        put_at = 0.0
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            outages = OUTAGES.describe()
            if outages != last or loop.time() - put_at >= PUBLISH_EVERY:
                try:
                    kv = kv or await health_bucket(nc.jetstream())
                    value = ServiceHealth(service=service, pid=os.getpid(), at=dt.datetime.now(dt.UTC), outages=outages)
                    await kv.put(key, msgspec.json.encode(value))
                    last, put_at = outages, loop.time()
                except Exception as exc:  # noqa: BLE001 - NATS away: the next look tries again
                    log.debug("cannot put the health of %s: %s", key, exc)
            await first_of(stop, timeout=CHECK_EVERY)
        if kv is not None:
            try:
                await kv.delete(key)
            except Exception as exc:  # noqa: BLE001 - expires anyway
                log.debug("cannot delete the health of %s: %s", key, exc)
    finally:
        await nc.close()


async def read_health(js: JetStreamContext) -> list[ServiceHealth]:
    """Returns the health of every service process that put one lately (none: [])."""
    try:
        kv = await js.key_value(HEALTH_BUCKET)
        keys = await kv.keys()
    except (BucketNotFoundError, NoKeysError):
        return []
    found = []
    for key in keys:
        try:
            entry = await kv.get(key)
            if entry.value:
                found.append(msgspec.json.decode(entry.value, type=ServiceHealth))
        except Exception as exc:  # noqa: BLE001 - deleted or expired meanwhile, or not ours
            log.debug("skipping health entry %s: %s", key, exc)
    return sorted(found, key=lambda h: (h.service, h.pid))
