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

__all__ = ["CREDENTIALS_ENV", "DEADLETTER_HEADER_ROOM", "DEADLETTER_KEPT_BYTES", "DEADLETTER_MAX_BYTES",
           "DEADLETTER_MAX_MSG_SIZE", "DEADLETTER_MAX_PER_CONSUMER", "HEARTBEAT_MAX_BYTES", "REPLICAS_ENV",
           "REPORTS_MAX_BYTES", "REPORTS_MAX_MSG_SIZE", "REPORTS_MAX_PER_SUBJECT", "closed_for_good", "connect",
           "connect_options", "credentials_identity", "dead_letter", "dead_letter_body", "ensure_streams",
           "existing_heartbeat_bucket", "heartbeat_bucket", "refused_for_room", "stream_replicas"]

CREDENTIALS_ENV = "BERTH_NATS_CREDS"
"""The credential (``.creds`` file) a process connects with when it is given none explicitly."""
REPLICAS_ENV = "BERTH_STREAM_REPLICAS"
"""Replicas of every stream and bucket Berth creates: 1 (default) on one nats-server, 3 on a 3-node cluster."""
MAX_REPLICAS = 5  # JetStream's limit
REPORTS_MAX_MSG_SIZE = 64 * 1024
"""The largest message (payload and headers) the ``REPORTS`` stream takes; the server refuses a larger one at
publish. A legitimate report is far smaller, every string of it bounded (``contracts.reports``: at most about
50 KB, a detail of ``MAX_REPORTED_DETAIL_CHARS`` control characters each escaped in six bytes)."""
REPORTS_MAX_BYTES = 1024**3
"""The most bytes ``REPORTS`` holds (reports not yet taken by the controller). Past it new reports are refused, never
old ones discarded: a report is work (a kernel running, exited). Before, nothing bounded it: an agent publishing on
its own report subjects as fast as it could, or the controller away, grew it until JetStream's disk was full."""
REPORTS_MAX_PER_SUBJECT = 1000
"""The most reports one subject (``rp.agent.<id>.<type>``: one agent, one kind of report) holds; past it that
subject's new reports are refused, others' still taken. With ``REPORTS_MAX_MSG_SIZE`` a subject holds at most 64 MiB.
An agent whose report is refused waits, as for NATS away, and sends it again (``services.agent.reporting``): nothing
is lost, its kernels' next steps wait until the controller has taken some."""
HEARTBEAT_MAX_BYTES = 512 * 1024
"""The largest heartbeat the agents' bucket takes (its ``max_value_size``: the server refuses a larger put), so that
the controller decodes at most this much per beat, not ``max_payload`` (8 MB with nats.conf: 0.4 s of CPU for a
hostile one). The largest legitimate one is far smaller: each of its lists holds at most
``contracts.reports.MAX_HEARTBEAT_KERNELS`` kernel ids, each a subject token (at most 128 one-byte characters)."""
DEADLETTER_MAX_BYTES = 1024**3
"""The most bytes ``DEADLETTER`` holds. Past it new dead letters are refused (logged, ``dead_letter``), never old ones
discarded: a dead letter is work an operator replays or drops (``berth dlq``). Before, nothing bounded it: an agent
publishing on its own dead-letter subject filled JetStream's disk (300 MiB a second here), and every stream with it."""
DEADLETTER_MAX_PER_CONSUMER = 1000
"""The most dead letters one subject holds (``dlq.<consumer>``: one consumer, one agent;
``dlq.<consumer>.<agent id>``: one consumer's letters of one agent's reports,
``contracts.subjects.dead_letter_subject_of``); past it that subject's new ones are refused, others' still taken.
A subject with this many letters waiting is an incident (``berth doctor`` counts them per consumer)."""
DEADLETTER_KEPT_BYTES = 16 * 1024
"""The most bytes of a message its dead letter keeps; of a larger one only its beginning, with its size and SHA-256
(``dead_letter_body``), and it is not replayed (``berth dlq replay`` says why). It bounds one sender in bytes: with
``DEADLETTER_MAX_PER_CONSUMER`` a subject holds at most 20 MiB (``DEADLETTER_MAX_MSG_SIZE`` each), an agent its own
``dlq.agent-<id>`` and its share of the controller's, 40 MiB: under 4 % of ``DEADLETTER_MAX_BYTES``, so that about
26 hostile agents together, not 3, are needed to fill it and have every other sender's letters refused. Before,
a letter kept up to 320 KiB (the largest event and its headers): one agent held about 375 MiB, 310 on its own subject.
An ordinary report or event is far smaller and kept whole: the letters replayed are reports, a few KiB (the largest
the bounds of ``contracts.reports`` let through, about 50 KB of escaped control characters, is the rare one cut);
an event is never replayed (``EVENTS`` keeps it whole)."""
DEADLETTER_HEADER_ROOM = 4 * 1024
"""Bytes of a dead letter for its headers (``Berth-Error`` at most 1,000 characters, the original subject, the
consumer, the time, and when cut its size and SHA-256); with larger headers less of the body is kept."""
DEADLETTER_MAX_MSG_SIZE = DEADLETTER_KEPT_BYTES + DEADLETTER_HEADER_ROOM
"""The largest dead letter (payload and headers) the stream takes, whoever publishes it: an agent, which may publish
on its own ``dlq.agent-<id>`` whatever it likes, is bounded by the stream, not by ``dead_letter``."""
_STREAM_STORE_FAILED = 10077
"""JetStream's error code when a stream does not store a message; with "maximum ..." in its description, one of its
limits refused it (discard new: ``refused_for_room``)."""
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
        discard=DiscardPolicy.NEW,
        discard_new_per_subject=True,
        max_bytes=REPORTS_MAX_BYTES,
        max_msgs_per_subject=REPORTS_MAX_PER_SUBJECT,
        max_msg_size=REPORTS_MAX_MSG_SIZE,
    ),
    StreamConfig(
        name=s.DEADLETTER_STREAM,
        subjects=s.DEADLETTER_SUBJECTS,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.NEW,
        discard_new_per_subject=True,
        max_msgs=1_000_000,
        max_bytes=DEADLETTER_MAX_BYTES,
        max_msgs_per_subject=DEADLETTER_MAX_PER_CONSUMER,
        max_msg_size=DEADLETTER_MAX_MSG_SIZE,
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
            if config.max_msgs_per_subject:
                config = await _keeping_held(js, config)
            await js.update_stream(config)
    await heartbeat_bucket(js)


async def _keeping_held(js: JetStreamContext, config: StreamConfig) -> StreamConfig:
    """Returns ``config`` (``DEADLETTER``'s, ``REPORTS``') with its per-subject limit raised to the most messages one
    subject holds now: the server enforces a lowered per-subject limit by deleting that subject's oldest messages,
    whatever the discard policy (a stream of an older version, unbounded, would lose its oldest dead letters or
    reports not yet handled). Its other limits, with discard new, delete nothing."""
    info = await js.stream_info(config.name, subjects_filter=">")
    held = max((info.state.subjects or {}).values(), default=0)
    if held <= (config.max_msgs_per_subject or 0):
        return config
    log.warning("%s holds %d messages on one subject, more than the %d a subject takes: all are kept, and that "
                "subject takes no new one until fewer are left", config.name, held, config.max_msgs_per_subject)
    return dataclasses.replace(config, max_msgs_per_subject=held)


async def heartbeat_bucket(js: JetStreamContext) -> KeyValue:
    """Returns the agents' heartbeat bucket, creating it when missing; it takes no value over ``HEARTBEAT_MAX_BYTES``
    and no rollup header (one an older version created is brought to both). nats-py's buckets allow rollups (its
    ``purge``): an agent, whose identity may put its own key only, wiped every agent's heartbeat with one put carrying
    ``Nats-Rollup: all`` (the controller reads busy kernels and app traffic there: another agent's busy sessions could
    be ended as idle). Nothing purges a key of this bucket."""
    try:
        kv = await js.key_value(s.HEARTBEAT_BUCKET)
    except BucketNotFoundError:
        kv = await js.create_key_value(KeyValueConfig(bucket=s.HEARTBEAT_BUCKET, history=1,
                                                      replicas=stream_replicas(), max_value_size=HEARTBEAT_MAX_BYTES))
    config = (await js.stream_info(f"KV_{s.HEARTBEAT_BUCKET}")).config
    wanted = dataclasses.replace(config, max_msg_size=HEARTBEAT_MAX_BYTES, allow_rollup_hdrs=False)
    if wanted != config:
        await js.update_stream(wanted)
    return kv


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
                      deliveries: int = 0) -> bool:
    """Moves a message that cannot be processed to ``dlq.<consumer>`` (an agent's report to ``dlq.<consumer>.<agent
    id>``: ``contracts.subjects.dead_letter_subject_of``) with its error, original
    subject, delivery count, consumer and time (headers: services/common/README.md); returns True. A message over
    ``DEADLETTER_KEPT_BYTES``, or that would not fit ``max_payload`` or ``DEADLETTER_MAX_MSG_SIZE`` with those
    headers, keeps only its beginning, and says so (``dead_letter_body``). When ``DEADLETTER`` refuses it (full:
    ``DEADLETTER_MAX_BYTES``, or its subject holds ``DEADLETTER_MAX_PER_CONSUMER``), the message is dropped, logged
    as an error with its size and SHA-256, and False returned: the caller goes on as after a dead letter (raised, the
    refusal would bring the message back for ever: a projector would retry its batch without end)."""
    log.warning("dead-lettering a message on %s for %s after %d deliveries: %s", subject, consumer, deliveries, error)
    headers = {s.HEADER_ERROR: error[:1000], s.HEADER_ORIGINAL_SUBJECT: subject, s.HEADER_DELIVERIES: str(deliveries),
               s.HEADER_CONSUMER: consumer, s.HEADER_DEAD_LETTERED_AT: dt.datetime.now(dt.UTC).isoformat()}
    body, headers = dead_letter_body(data, headers, min(_max_payload(js), DEADLETTER_MAX_MSG_SIZE))
    try:
        await js.publish(s.dead_letter_subject_of(consumer, subject), body, headers=headers)
    except nats.js.errors.APIError as exc:
        if not refused_for_room(exc):
            raise
        log.error("%s refused the dead letter (%s) of a message on %s for %s: the message (%d bytes, SHA-256 %s) is "
                  "dropped; the letters held are kept: work through them (berth dlq) to make room", s.DEADLETTER_STREAM,
                  exc.description, subject, consumer, len(data), hashlib.sha256(data).hexdigest())
        return False
    return True


def refused_for_room(error: BaseException) -> bool:
    """Whether ``error`` is a stream's refusal of a message for lack of room: one of its limits (bytes, messages,
    messages per subject) reached, with discard new. Sent again once the stream's consumers took some, it is stored;
    a message over ``max_msg_size`` is refused otherwise (another error code), for good."""
    return (isinstance(error, nats.js.errors.APIError) and error.err_code == _STREAM_STORE_FAILED
            and "maximum" in str(error.description))


def dead_letter_body(data: bytes, headers: dict[str, str], max_payload: int) -> tuple[bytes, dict[str, str]]:
    """Returns the body and headers of a dead letter of ``data``: ``data`` itself when it is at most
    ``DEADLETTER_KEPT_BYTES`` and fits ``max_payload`` (the most a letter may be) with ``headers``; else its first
    bytes (at most ``DEADLETTER_KEPT_BYTES``, as many as fit) with ``headers`` plus ``HEADER_TRUNCATED``, its size
    (``HEADER_ORIGINAL_SIZE``) and its SHA-256 (``HEADER_ORIGINAL_SHA256``). nats-py checks only the payload against
    ``max_payload``; the server checks the payload and headers together and closes the connection for good when they
    are over (a hostile agent's report of nearly ``max_payload`` undecodable bytes made the controller lose its
    connection, and spin, at every start)."""
    if len(data) <= _kept(headers, max_payload):
        return data, headers
    headers = {**headers, s.HEADER_TRUNCATED: "true", s.HEADER_ORIGINAL_SIZE: str(len(data)),
               s.HEADER_ORIGINAL_SHA256: hashlib.sha256(data).hexdigest()}
    return data[:_kept(headers, max_payload)], headers


def _kept(headers: dict[str, str], max_payload: int) -> int:
    """Returns how many bytes of a message a dead letter with ``headers`` keeps at most."""
    return max(0, min(DEADLETTER_KEPT_BYTES, max_payload - _headers_size(headers)))


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
