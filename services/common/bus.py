"""NATS connection, JetStream streams and the dead-letter path, shared by every service."""

from __future__ import annotations

import datetime as dt
import logging

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from contracts import subjects as s

__all__ = ["connect", "dead_letter", "ensure_streams", "heartbeat_bucket"]

log = logging.getLogger(__name__)

STREAMS = (
    StreamConfig(
        name=s.EVENTS_STREAM,
        subjects=s.EVENTS_SUBJECTS,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        duplicate_window=120.0,
    ),
    StreamConfig(
        name=s.REPORTS_STREAM,
        subjects=s.REPORTS_SUBJECTS,
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        duplicate_window=120.0,
    ),
    StreamConfig(
        name=s.DEADLETTER_STREAM,
        subjects=s.DEADLETTER_SUBJECTS,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_msgs=1_000_000,
    ),
)


async def connect(url: str, name: str) -> Client:
    """Returns a connection that keeps reconnecting to ``url``."""
    servers = [u.strip() for u in url.split(",") if u.strip()]
    return await nats.connect(servers=servers, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.2)


async def ensure_streams(js: JetStreamContext) -> None:
    """Creates the streams and buckets Berth needs, or updates them to the current config."""
    for config in STREAMS:
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await js.update_stream(config)
    await heartbeat_bucket(js)


async def heartbeat_bucket(js: JetStreamContext) -> KeyValue:
    """Returns the agents' heartbeat bucket, creating it when missing."""
    try:
        return await js.key_value(s.HEARTBEAT_BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(KeyValueConfig(bucket=s.HEARTBEAT_BUCKET, history=1))


async def dead_letter(js: JetStreamContext, consumer: str, subject: str, data: bytes, error: str, *,
                      deliveries: int = 0) -> None:
    """Moves a message that cannot be processed to ``dlq.<consumer>`` with its error, original
    subject, delivery count, consumer and time (headers: services/common/README.md)."""
    log.warning("dead-lettering a message on %s for %s after %d deliveries: %s", subject, consumer, deliveries, error)
    headers = {s.HEADER_ERROR: error[:1000], s.HEADER_ORIGINAL_SUBJECT: subject, s.HEADER_DELIVERIES: str(deliveries),
               s.HEADER_CONSUMER: consumer, s.HEADER_DEAD_LETTERED_AT: dt.datetime.now(dt.UTC).isoformat()}
    await js.publish(s.dead_letter_subject(consumer), data, headers=headers)
