"""GraphQL types of sessions (Strawberry), mapped from the typed rows of ``projections.queries``;
mutation inputs/results; a session's status updates."""

from __future__ import annotations

import datetime as dt
import json

import strawberry
from strawberry.scalars import JSON

from projections.queries.rows import AgentRow, EventLogRow, KernelRow, SessionRow
from projections.session_status import SessionStatusView
from services.common.settings import DEFAULT_IMAGE
from services.gateway.slots import SlotInput, slots_json

__all__ = [
    "Agent",
    "CreateSessionInput",
    "DEFAULT_IMAGE",
    "EventRecord",
    "Kernel",
    "Mount",
    "MountInput",
    "Session",
    "SessionCommandResult",
    "SessionPage",
    "SessionStatusUpdate",
]


@strawberry.type
class Kernel:
    id: str
    session_id: str
    cluster_role: str
    cluster_idx: int
    agent_id: str | None
    status: str
    container_id: str | None
    exit_code: int | None
    status_reason: str | None = strawberry.field(description="Why it ended (failed-to-start, user-requested, ...).")
    status_detail: str | None = strawberry.field(
        description="For people: the image pull's progress while PREPARING; the cause of a failed start.")
    slots: JSON = strawberry.field(description='Slot amounts as decimal strings, e.g. {"cpu": "1", "mem": "1073741824"}.')
    created_at: dt.datetime
    updated_at: dt.datetime

    @staticmethod
    def from_row(row: KernelRow) -> Kernel:
        """Returns a kernel from a ``kernels`` row."""
        fields = {k: getattr(row, k) for k in (
            "session_id", "cluster_role", "cluster_idx", "agent_id", "status",
            "container_id", "exit_code", "status_reason", "status_detail", "created_at", "updated_at")}
        return Kernel(id=row.kernel_id, slots=slots_json(row.slots), **fields)


@strawberry.type(description="A storage folder mounted into every kernel of a session, as resolved at its request.")
class Mount:
    name: str = strawberry.field(description="The folder's name when the session was requested.")
    folder_id: str
    volume: str
    target: str = strawberry.field(description="Where it is in the container (under /home/work).")
    permission: str = strawberry.field(description='"ro" or "rw".')

    @staticmethod
    def from_json(value: dict) -> Mount:
        """Returns a mount from one entry of a ``sessions`` row's ``mounts``."""
        return Mount(name=value["name"], folder_id=value["folder_id"], volume=value["volume"],
                     target=value["target"], permission=value.get("permission", "ro"))


@strawberry.type
class Session:
    id: str
    name: str
    owner: str = strawberry.field(description="Access key of the owner.")
    image: str
    session_type: str
    status: str
    status_reason: str | None
    status_detail: str | None = strawberry.field(
        description="For people: the image pull's progress while PREPARING; why it ended (the cause of a failed "
        "start, as the agent saw it: Docker's or the registry's message, the runner's last words, ...); while an "
        "agent of the session is lost, which one, since when, and when the session ends unless it comes back.")
    requested_slots: JSON = strawberry.field(description="Sum of the kernels' slots, amounts as decimal strings.")
    cluster_size: int
    agent_ids: list[str]
    status_history: JSON = strawberry.field(description='When each status was entered: {"PENDING": "<ISO time>", ...}.')
    created_at: dt.datetime
    updated_at: dt.datetime
    terminated_at: dt.datetime | None
    version: int
    last_position: int
    domain: str
    project: str
    resource_group: str
    priority: int = strawberry.field(description="0..100; higher is scheduled first.")
    pending_code: str | None = strawberry.field(
        description="Why the last scheduling pass left it PENDING, as a stable code (quota-exceeded, no-agent, ...).")
    pending_reason: str | None = strawberry.field(description="The same reason, for people.")
    mounts: list[Mount] = strawberry.field(description="The storage folders mounted, resolved at its request.")
    kernels: list[Kernel]

    @staticmethod
    def from_row(row: SessionRow, kernels: list[Kernel], *, detail: str | None = None) -> Session:
        """Returns a session from a ``sessions`` row and its kernels; ``detail``, when given, is said in place
        of the row's status detail (a condition the read model of sessions does not follow: a lost agent)."""
        fields = {k: getattr(row, k) for k in (
            "name", "owner", "image", "session_type", "status", "status_reason", "status_detail",
            "cluster_size", "created_at", "updated_at", "terminated_at", "version", "last_position",
            "domain", "project", "resource_group", "priority", "pending_code", "pending_reason")}
        if detail is not None:
            fields["status_detail"] = detail
        return Session(
            id=row.session_id, requested_slots=slots_json(row.requested_slots),
            agent_ids=list(row.agent_ids or []), status_history=dict(row.status_history or {}),
            mounts=[Mount.from_json(m) for m in row.mounts or ()], kernels=kernels, **fields,
        )


@strawberry.type(description="A page of sessions, oldest first; pass endCursor as `after` for the next page.")
class SessionPage:
    edges: list[Session]
    end_cursor: str | None
    has_next_page: bool


@strawberry.type
class Agent:
    id: str
    hostname: str | None = strawberry.field(description="The agent's host; null unless you are an admin.")
    backend: str
    resource_group: str
    status: str
    capacity: JSON
    occupied: JSON
    kernel_count: int
    registered_at: dt.datetime
    updated_at: dt.datetime
    version: int

    @staticmethod
    def from_row(row: AgentRow, *, with_host: bool = True) -> Agent:
        """Returns an agent from an ``agents`` row; its hostname only ``with_host`` (for admins)."""
        fields = {k: getattr(row, k) for k in (
            "backend", "resource_group", "status", "kernel_count", "registered_at", "updated_at", "version")}
        return Agent(
            id=row.agent_id, hostname=row.hostname if with_host else None, capacity=slots_json(row.capacity),
            occupied=slots_json(row.occupied), **fields
        )


@strawberry.type(name="Event", description="One event of the history; payload is the event's JSON text as stored.")
class EventRecord:
    position: int
    type: str
    aggregate_id: str
    aggregate_version: int
    occurred_at: dt.datetime
    actor: str
    correlation_id: str
    causation_id: str | None
    payload: str

    @staticmethod
    def from_row(row: EventLogRow) -> EventRecord:
        """Returns an event from an ``event_log`` row."""
        return EventRecord(
            position=row.position, type=row.type, aggregate_id=row.aggregate_id,
            aggregate_version=row.aggregate_version, occurred_at=row.occurred_at, actor=row.actor,
            correlation_id=row.correlation_id, causation_id=row.causation_id,
            payload=json.dumps(row.payload, separators=(",", ":")),
        )


@strawberry.type(description="A session's status after one of its events (subscription sessionStatus).")
class SessionStatusUpdate:
    session_id: str
    status: str
    status_reason: str | None = strawberry.field(description="Why it entered the status (scheduled, "
                                                 "kernel-preparing, failed-to-start, user-requested, ...).")
    status_detail: str | None = strawberry.field(
        description="For people: the image pull's progress while PREPARING; the cause of a failed start.")
    position: int = strawberry.field(description="Event-store position of the event; pass it as afterPosition.")
    occurred_at: dt.datetime
    pending_code: str | None = strawberry.field(
        default=None, description="While PENDING: why the last scheduling pass could not place it, as a stable "
        "code (quota-exceeded, no-agent, head-of-line, dependency, ...); cleared by the next status.")
    pending_reason: str | None = strawberry.field(default=None, description="The same reason, for people.")

    @staticmethod
    def of(session_id: str, position: int, occurred_at: dt.datetime, view: SessionStatusView) -> SessionStatusUpdate:
        """Returns the update of a session's status view after the event at ``position``."""
        return SessionStatusUpdate(
            session_id=session_id, status=view.status.value, status_reason=view.reason.value if view.reason else None,
            status_detail=view.detail, position=position, occurred_at=occurred_at,
            pending_code=view.pending_code, pending_reason=view.pending_reason,
        )


@strawberry.input(description="A storage folder to mount (`berth ... --mount NAME[:PATH][:ro|rw]`).")
class MountInput:
    name: str = strawberry.field(description="A folder of yours, of the session's project, or shared with you: its "
                                 "name (yours first, then the project's, then the one shared with you) or its id.")
    target: str | None = strawberry.field(
        default=None, description="Where in the container: a path under /home/work (relative: from there); "
        "default /home/work/<name>.")
    permission: str | None = strawberry.field(
        default=None, description='"ro" or "rw" (any case); default: your permission on the folder, at most rw.')


@strawberry.input
class CreateSessionInput:
    name: str | None = strawberry.field(default=None, description='Defaults to "session-<8 hex>".')
    image: str = DEFAULT_IMAGE
    session_type: str = strawberry.field(default="interactive", description='"interactive" or "batch" (any case).')
    resources: list[SlotInput] | None = strawberry.field(
        default=None, description='Slots per kernel, e.g. [{slot: "cpu", amount: "2"}, {slot: "mem", amount: "4g"}];'
        " missing cpu/mem default to 1 and 1g.")
    cluster_size: int = 1
    startup_command: str | None = None
    project: str | None = strawberry.field(
        default=None, description='Defaults to "default" when you are a member, else your first project.')
    resource_group: str | None = strawberry.field(default=None, description='Defaults to "default".')
    priority: int = strawberry.field(default=10, description="0..100; higher is scheduled first.")
    cluster_mode: str = strawberry.field(
        default="single-node", description='"single-node" (all kernels on one agent) or "multi-node".')
    starts_at: dt.datetime | None = strawberry.field(
        default=None, description="A batch session is not started before this time.")
    batch_timeout: int = strawberry.field(default=0, description="Seconds a batch session may run (0: no limit).")
    dependencies: list[str] | None = strawberry.field(
        default=None, description="Sessions (ids) that must have finished successfully first; each must be yours.")
    designated_agents: list[str] | None = strawberry.field(
        default=None, description="Only these agents may run the session (admins only).")
    mounts: list[MountInput] | None = strawberry.field(
        default=None, description="Storage folders to mount, checked at enqueue; your folders named .something "
        "mount by themselves at /home/work/<name>.")
    idempotency_key: str | None = strawberry.field(
        default=None, description="1 to 128 visible ASCII characters, chosen by the client per session it means to "
        "create and sent again on a retry: a request with a key this keypair used before returns that session and "
        "creates nothing. Keys never expire: a new session needs a new key.")


@strawberry.type
class SessionCommandResult:
    session_id: str
    position: int = strawberry.field(description="Event-store position of the last event; pass it as afterPosition.")
