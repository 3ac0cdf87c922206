"""Who may do what on the bus: the NATS permissions of each service and of each agent.

Least privilege (DESIGN.md §10): only the relay publishes to the ``EVENTS`` stream's subjects
(``ev.>``); an agent touches nothing but its own subjects — its reports, its own durable consumer
and recall consumer on ``ev.agent.<id>.>``, its exec, logs and app subjects, its kernels' output
``io.agent.<id>.>``, its own heartbeat key — and answers the requests it receives. Every identity
reads replies only under its own inbox prefix (``_INBOX_<identity>``), which ``bus.connect``
sets from the credentials. ``admin`` (``berth up``'s own connection, operators' tools, the
tests) may do everything.
"""

from __future__ import annotations

from contracts.app_tunnels import APP_SUBJECTS, app_subject
from contracts.execution import EXEC_SUBJECTS, IO_SUBJECTS, LOGS_SUBJECTS, exec_subject, io_agent_filter, logs_subject
from contracts.subjects import (
    DEADLETTER_STREAM,
    DEADLETTER_SUBJECTS,
    EVENTS_STREAM,
    EVENTS_SUBJECTS,
    HEALTH_BUCKET,
    HEARTBEAT_BUCKET,
    REPORTS_STREAM,
    REPORTS_SUBJECTS,
    SCHEDULER_CHECKPOINT_BUCKET,
    agent_events_filter,
    agent_report_subjects,
    check_token,
    dead_letter_subject,
    heartbeat_key_subject,
    storage_report_filter,
)
from services.common.nats_jwt import Permissions

__all__ = ["ADMIN", "AGENT_IDENTITY", "SERVICES", "agent_identity", "inbox_prefix", "permissions"]

ADMIN = "admin"
_AGENT = "agent-"
AGENT_IDENTITY = _AGENT + "{agent_id}"
"""The identity of an agent, as a template of its id."""
_KV_STREAM = f"KV_{HEARTBEAT_BUCKET}"
_HEALTH_STREAM = f"KV_{HEALTH_BUCKET}"
_STREAMS = (EVENTS_STREAM, REPORTS_STREAM, DEADLETTER_STREAM, _KV_STREAM, _HEALTH_STREAM)
_CHECKPOINT_STREAM = f"KV_{SCHEDULER_CHECKPOINT_BUCKET}"

_SERVICE_JS = (
    "$JS.API.INFO",
    *(f"$JS.API.STREAM.{verb}.{stream}" for verb in ("INFO", "CREATE", "UPDATE") for stream in _STREAMS),
    *(f"$JS.API.STREAM.MSG.GET.{stream}" for stream in _STREAMS),
    *(f"$JS.API.DIRECT.GET.{stream}.>" for stream in _STREAMS),
    *(f"$JS.API.CONSUMER.{verb}.{stream}.>" for verb in ("CREATE", "DURABLE.CREATE", "INFO", "MSG.NEXT", "DELETE")
      for stream in _STREAMS),
    *(f"$JS.API.CONSUMER.CREATE.{stream}" for stream in _STREAMS),
    *(f"$JS.ACK.{stream}.>" for stream in _STREAMS),
    "$JS.FC.>",
    *DEADLETTER_SUBJECTS,
    f"$KV.{HEALTH_BUCKET}.>",
)
"""What every service does on JetStream: look up and create (or update to the current config)
Berth's streams and bucket — never delete or purge them —, read a message by sequence (the relay's
last position), run its consumers; dead-letter what it cannot process; and put its outages in the
health bucket (``services.common.health_board``; agents do not: their identity writes nothing shared)."""

_SERVICE_EXTRA: dict[str, Permissions] = {
    "relay": Permissions(publish=EVENTS_SUBJECTS),
    "projector": Permissions(),
    # its checkpoint bucket, which no other identity (but admin) reads or writes.
    "scheduler": Permissions(publish=(
        *(f"$JS.API.STREAM.{verb}.{_CHECKPOINT_STREAM}" for verb in ("INFO", "CREATE", "MSG.GET")),
        f"$JS.API.DIRECT.GET.{_CHECKPOINT_STREAM}.>",
        f"$KV.{SCHEDULER_CHECKPOINT_BUCKET}.>",
    )),
    "controller": Permissions(),
    # folder events in (its durable consumers storage-<volume>), its reports on rp.storage.> out.
    "storage": Permissions(publish=(storage_report_filter(),)),
    # exec, logs and app tunnel requests into any kernel, their output; ``berth dlq replay`` (superadmins) publishes a
    # dead-lettered report again and deletes the entry.
    "gateway": Permissions(publish=(EXEC_SUBJECTS, LOGS_SUBJECTS, APP_SUBJECTS, *REPORTS_SUBJECTS,
                                    f"$JS.API.STREAM.MSG.DELETE.{DEADLETTER_STREAM}"),
                           subscribe=(IO_SUBJECTS,)),
}

SERVICES = tuple(_SERVICE_EXTRA)
"""The services' identities (one ``.creds`` each); agents are ``agent-<id>``."""


def agent_identity(agent_id: str) -> str:
    """Returns the identity (NATS user name, credentials file stem) of the agent ``agent_id``."""
    return AGENT_IDENTITY.format(agent_id=check_token(agent_id, "agent id"))


def inbox_prefix(identity: str) -> str:
    """Returns ``_INBOX_<identity>``: where ``identity`` receives replies, and nobody else."""
    return f"_INBOX_{check_token(identity, 'identity')}"


def _agent(agent_id: str) -> Permissions:
    own = agent_identity(agent_id)
    events = agent_events_filter(agent_id)
    consumers = (own, f"{own}-recall")
    return Permissions(
        publish=(
            *agent_report_subjects(agent_id),
            heartbeat_key_subject(agent_id),
            f"$JS.API.STREAM.INFO.{_KV_STREAM}",
            "$JS.API.INFO",
            *(f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.{name}.{events}" for name in consumers),
            *(f"$JS.API.CONSUMER.{verb}.{EVENTS_STREAM}.{name}" for verb in ("INFO", "DELETE") for name in consumers),
            f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.{own}",
            f"$JS.ACK.{EVENTS_STREAM}.{own}.>",
            f"$JS.FC.{EVENTS_STREAM}.>",
            dead_letter_subject(own),
            io_agent_filter(agent_id),
        ),
        subscribe=(exec_subject(agent_id), logs_subject(agent_id), app_subject(agent_id), f"{inbox_prefix(own)}.>"),
        respond=True,
    )


def permissions(identity: str) -> Permissions:
    """Returns the permissions of ``identity``: ``admin``, a service of ``SERVICES`` or
    ``agent-<id>``; raises ``ValueError`` for any other name."""
    if identity == ADMIN:
        return Permissions(publish=(">",), subscribe=(">",), respond=True)
    if identity.startswith(_AGENT):
        return _agent(identity[len(_AGENT):])
    if identity not in _SERVICE_EXTRA:
        raise ValueError(f"unknown bus identity {identity!r}: use admin, {', '.join(SERVICES)} or agent-<id>")
    extra = _SERVICE_EXTRA[identity]
    return Permissions(publish=(*_SERVICE_JS, *extra.publish),
                       subscribe=(f"{inbox_prefix(identity)}.>", *extra.subscribe), respond=extra.respond)

