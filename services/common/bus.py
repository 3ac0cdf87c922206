"""NATS connection, JetStream streams and the dead-letter path, shared by every service."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from contracts import subjects as s
from services.common.bus_identities import inbox_prefix
from services.common.bus_outages import OutageLog
from services.common.transient import NATS, backoff, unavailable_dependency

__all__ = ["CREDENTIALS_ENV", "REPLICAS_ENV", "REPORTS_MAX_MSG_SIZE", "closed_for_good", "connect", "connect_options",
           "credentials_identity", "dead_letter", "dead_letter_body", "ensure_streams", "existing_heartbeat_bucket", "heartbeat_bucket",
           "stream_replicas"]

CREDENTIALS_ENV = "BERTH_NATS_CREDS"
"""The credential (``.creds`` file) a process connects with when it is given none explicitly."""
REPLICAS_ENV = "BERTH_STREAM_REPLICAS"
"""Replicas of every stream and bucket Berth creates: 1 (default) on one nats-server, 3 on a 3-node cluster."""
MAX_REPLICAS = 5  # JetStream's limit
REPORTS_MAX_MSG_SIZE = 64 * 1024
"""The largest message (payload and headers) the ``REPORTS`` stream takes; the server refuses a larger one at
publish. A legitimate report is far smaller, every string of it bounded (``contracts.reports``: at most about
50 KB, a detail of ``MAX_REPORTED_DETAIL_CHARS`` control characters each escaped in six bytes)."""
DEFAULT_MAX_PAYLOAD = 1024 * 1024
"""NATS' default ``max_payload``: what a connection assumes before the server said otherwise."""
HEADER_SLACK = 64
"""Bytes kept to spare when a dead letter's headers are measured."""
_USER_JWT = re.compile(r"-----BEGIN NATS USER JWT-----\s*(\S+)\s*------END NATS USER JWT------")

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
        max_msg_size=REPORTS_MAX_MSG_SIZE,
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


def credentials_identity(credentials: str | Path) -> str:
    """Returns the identity (the user JWT's name) of a ``.creds`` file."""
    found = _USER_JWT.search(Path(credentials).read_text())
    if found is None:
        raise ValueError(f"{credentials} is not a NATS credentials file (no user JWT)")
    payload = found.group(1).split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["name"])


def connect_options(url: str, name: str, credentials: str | Path | None = None) -> dict[str, Any]:
    """Returns the ``nats.connect`` options of every Berth connection: the servers of ``url``
    (comma-separated), endless reconnects, and the credential ``credentials`` (default
    ``$BERTH_NATS_CREDS``; none when empty) with its identity's own inbox prefix."""
    servers = [u.strip() for u in url.split(",") if u.strip()]
    options: dict[str, Any] = {"servers": servers, "name": name, "max_reconnect_attempts": -1,
                               "reconnect_time_wait": 0.2}
    creds = os.environ.get(CREDENTIALS_ENV, "") if credentials is None else str(credentials)
    if creds:
        options["user_credentials"] = creds
        options["inbox_prefix"] = inbox_prefix(credentials_identity(creds))
    return options


async def connect(url: str, name: str, credentials: str | Path | None = None) -> Client:
    """Returns a connection that keeps reconnecting to ``url``, authenticated by ``credentials``
    (default ``$BERTH_NATS_CREDS``), its outages logged once each (``bus_outages``)."""
    return await nats.connect(**connect_options(url, name, credentials), **OutageLog(name).callbacks())


def stream_replicas() -> int:
    """Returns ``$BERTH_STREAM_REPLICAS`` (default 1); raises ValueError unless it is 1 to 5."""
    raw = os.environ.get(REPLICAS_ENV, "").strip() or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_REPLICAS:
        raise ValueError(f"{REPLICAS_ENV} must be a whole number from 1 to {MAX_REPLICAS}, not {raw!r}")
    return int(raw)


async def ensure_streams(js: JetStreamContext, *, patience: float = 0.0) -> None:
    """Creates the streams and buckets Berth needs (``stream_replicas()`` replicas each), or updates
    them to the current config. For ``patience`` seconds a JetStream that does not answer yet (a cluster
    just started still electing its leader: its API times out or is unavailable) is waited for, with
    backoff; then, or at once for any other error, the error is raised."""
    deadline = time.monotonic() + patience
    tries = 0
    while True:
        try:
            return await _ensure_streams(js)
        except Exception as exc:
            tries += 1
            if unavailable_dependency(exc) != NATS or time.monotonic() + backoff(tries) > deadline:
                raise
            if tries == 1:
                log.warning("JetStream does not answer yet (%s: %s); waiting for it up to %.0f s",
                            type(exc).__name__, exc, patience)
            await asyncio.sleep(backoff(tries))


async def _ensure_streams(js: JetStreamContext) -> None:
    replicas = stream_replicas()
    for config in (dataclasses.replace(c, num_replicas=replicas) for c in STREAMS):
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
        return await js.create_key_value(KeyValueConfig(bucket=s.HEARTBEAT_BUCKET, history=1,
                                                        replicas=stream_replicas()))


async def existing_heartbeat_bucket(js: JetStreamContext) -> KeyValue:
    """Returns the agents' heartbeat bucket once it exists, waiting for it (an agent may create no
    stream: ``berth up`` or a service creates them, maybe after the agent started)."""
    wait = 0.1
    while True:
        try:
            return await js.key_value(s.HEARTBEAT_BUCKET)
        except BucketNotFoundError:
            log.info("waiting for the bucket %s (created by berth up or a service)", s.HEARTBEAT_BUCKET)
            await asyncio.sleep(wait)
            wait = min(wait * 2, 2.0)


async def dead_letter(js: JetStreamContext, consumer: str, subject: str, data: bytes, error: str, *,
                      deliveries: int = 0) -> None:
    """Moves a message that cannot be processed to ``dlq.<consumer>`` with its error, original
    subject, delivery count, consumer and time (headers: services/common/README.md). A message that
    would not fit the connection's ``max_payload`` with those headers keeps only its beginning, and
    says so (``dead_letter_body``)."""
    log.warning("dead-lettering a message on %s for %s after %d deliveries: %s", subject, consumer, deliveries, error)
    headers = {s.HEADER_ERROR: error[:1000], s.HEADER_ORIGINAL_SUBJECT: subject, s.HEADER_DELIVERIES: str(deliveries),
               s.HEADER_CONSUMER: consumer, s.HEADER_DEAD_LETTERED_AT: dt.datetime.now(dt.UTC).isoformat()}
    body, headers = dead_letter_body(data, headers, _max_payload(js))
    await js.publish(s.dead_letter_subject(consumer), body, headers=headers)


def dead_letter_body(data: bytes, headers: dict[str, str], max_payload: int) -> tuple[bytes, dict[str, str]]:
    """Returns the body and headers of a dead letter of ``data``: ``data`` itself when it fits ``max_payload``
    with ``headers``; else its first bytes (as many as fit) with ``headers`` plus ``HEADER_TRUNCATED``, its size
    (``HEADER_ORIGINAL_SIZE``) and its SHA-256 (``HEADER_ORIGINAL_SHA256``). nats-py checks only the payload
    against ``max_payload``; the server checks the payload and headers together and closes the connection
    for good when they are over (a hostile agent's report of nearly ``max_payload`` undecodable bytes made
    the controller lose its connection, and spin, at every start)."""
    if len(data) + _headers_size(headers) <= max_payload:
        return data, headers
    headers = {**headers, s.HEADER_TRUNCATED: "true", s.HEADER_ORIGINAL_SIZE: str(len(data)),
               s.HEADER_ORIGINAL_SHA256: hashlib.sha256(data).hexdigest()}
    return data[:max(0, max_payload - _headers_size(headers))], headers


def _headers_size(headers: dict[str, str]) -> int:
    """Returns the bytes ``headers`` take in a message (``NATS/1.0``, a ``key: value`` line each, an empty
    line), with ``HEADER_SLACK`` to spare."""
    lines = sum(len(f"{key}: {value.strip()}\r\n".encode()) for key, value in headers.items())
    return len(b"NATS/1.0\r\n\r\n") + lines + HEADER_SLACK


def _max_payload(js: JetStreamContext) -> int:
    """Returns the largest message (payload and headers) the server of ``js``'s connection takes."""
    value = getattr(getattr(js, "_nc", None), "max_payload", None)  # the server's INFO (nats-py's default before)
    return value if isinstance(value, int) and value > 0 else DEFAULT_MAX_PAYLOAD


def closed_for_good(js: JetStreamContext) -> bool:
    """Returns True when ``js``'s connection is closed and will not reconnect (nats-py's ``CLOSED``: after
    ``close()``, or a protocol error of the server such as "maximum payload exceeded")."""
    return getattr(getattr(js, "_nc", None), "is_closed", False) is True
