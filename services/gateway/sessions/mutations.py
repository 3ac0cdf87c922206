"""Mutations: each turns its input into a domain command and records the outcome in the event store.

A refused command (bad input, unknown session, wrong status) raises a GraphQL
error with ``extensions.code`` and records nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import strawberry

from contracts import commands as c
from contracts.limits import LIMITS
from contracts.session import KernelSpec, SessionSpec
from contracts.slots import SlotError, parse_slots
from contracts.status import ClusterMode, SessionType
from contracts.subjects import SubjectError
from domain.errors import DomainError
from domain.session import MAX_PRIORITY, MIN_PRIORITY
from services.application.context import make_context
from services.gateway.context import Info, caller
from services.gateway.errors import BAD_INPUT, GatewayError, from_domain
from services.gateway.limits import checked, checked_choice, checked_value
from services.gateway.sessions.enqueue import enqueued
from services.gateway.sessions.idempotency import earlier_request, session_id_for
from services.gateway.sessions.mounts import mount_requests
from services.gateway.sessions.refs import resolve_owned_session
from services.gateway.sessions.types import CreateSessionInput, SessionCommandResult

__all__ = ["DEFAULT_RESOURCES", "MAX_CLUSTER_SIZE", "Mutation", "build_request"]

DEFAULT_RESOURCES = {"cpu": "1", "mem": "1g"}
MAX_CLUSTER_SIZE = 64


def build_request(data: CreateSessionInput, owner: str, session_id: str) -> c.RequestSession:
    """Returns the ``RequestSession`` command for a ``createSession`` input; raises ``GatewayError`` on bad input
    (BAD_INPUT for any field over its limit in ``contracts.limits``)."""
    if not 1 <= data.cluster_size <= MAX_CLUSTER_SIZE:
        raise GatewayError(BAD_INPUT, f"clusterSize must be between 1 and {MAX_CLUSTER_SIZE}, got {data.cluster_size}")
    try:
        session_type = SessionType(checked_choice("sessionType", data.session_type).lower())
    except ValueError:
        known = ", ".join(t.value for t in SessionType)
        raise GatewayError(BAD_INPUT, f"unknown sessionType {data.session_type!r} (known: {known})") from None
    raw = dict(DEFAULT_RESOURCES)
    seen: set[str] = set()
    for item in data.resources or ():
        if item.slot in seen:
            raise GatewayError(BAD_INPUT, f"resource slot {item.slot!r} given twice")
        seen.add(item.slot)
        raw[item.slot] = item.amount
    try:
        checked_value(LIMITS[KernelSpec]["slots"], raw)
        slots = parse_slots(raw)  # what any kernel may ask for (cpu > 0, at least MIN_KERNEL_CPU): the domain's check
    except SlotError as exc:
        raise GatewayError(BAD_INPUT, str(exc)) from exc
    kernels = [
        KernelSpec(kernel_id=f"{session_id}-k{idx}", cluster_role="main" if idx == 0 else "sub", cluster_idx=idx, slots=slots)
        for idx in range(data.cluster_size)
    ]
    for field, value in (("project", data.project), ("resource_group", data.resource_group),
                         ("dependencies", data.dependencies), ("designated_agents", data.designated_agents)):
        if value is not None:  # the lists as given, before their repeats are dropped
            checked_value(LIMITS[SessionSpec][field], value)
    return checked(c.RequestSession(owner=owner, spec=SessionSpec(
        name=data.name if data.name is not None else f"session-{session_id[:8]}",
        image=data.image, session_type=session_type, kernels=kernels,
        startup_command=data.startup_command, **_placement_options(data),
    )))


def _placement_options(data: CreateSessionInput) -> dict[str, Any]:
    """Returns the scheduling options of an input as ``SessionSpec`` fields; BAD_INPUT when invalid."""
    try:
        cluster_mode = ClusterMode(checked_choice("clusterMode", data.cluster_mode).lower())
    except ValueError:
        known = ", ".join(m.value for m in ClusterMode)
        raise GatewayError(BAD_INPUT, f"unknown clusterMode {data.cluster_mode!r} (known: {known})") from None
    if not MIN_PRIORITY <= data.priority <= MAX_PRIORITY:
        raise GatewayError(BAD_INPUT, f"priority must be between {MIN_PRIORITY} and {MAX_PRIORITY}, got {data.priority}")
    if data.batch_timeout < 0:
        raise GatewayError(BAD_INPUT, f"batchTimeout must be >= 0 seconds, got {data.batch_timeout}")
    starts_at = data.starts_at
    if starts_at is not None and starts_at.tzinfo is None:
        starts_at = starts_at.replace(tzinfo=dt.UTC)
    return {
        "priority": data.priority, "cluster_mode": cluster_mode, "starts_at": starts_at,
        "batch_timeout": data.batch_timeout, "dependencies": list(dict.fromkeys(data.dependencies or ())),
        "designated_agents": list(dict.fromkeys(data.designated_agents or ())),
    }


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Requests a new session owned by the caller, in its domain, after the enqueue "
                         "checks (project, resource group, resource policy); returns its id and event position. Its "
                         "name must not be that of another live session of the caller (CONFLICT naming it). With an "
                         "`idempotencyKey` this keypair used before, it returns that session and creates nothing.")
    async def create_session(self, info: Info, input: CreateSessionInput) -> SessionCommandResult:
        principal = caller(info)
        resources = info.context.resources
        key = input.idempotency_key
        session_id = uuid.uuid4().hex if key is None else session_id_for(principal.access_key, key)
        if key is not None and (earlier := await earlier_request(info, principal, session_id)) is not None:
            return earlier  # a retry: the session its first request created, nothing recorded
        command = build_request(input, principal.access_key, session_id)
        async with enqueued(info, principal, command, input.project, input.resource_group,
                            mount_requests(input.mounts)) as command:
            try:
                position = await resources.session_requests.submit(
                    (session_id, command, make_context(principal.access_key)))
            except (DomainError, SlotError, SubjectError) as exc:
                if key is not None and (earlier := await earlier_request(info, principal, session_id)) is not None:
                    return earlier  # a concurrent retry created it first
                raise from_domain(exc) from exc
        return SessionCommandResult(session_id=session_id, position=position)

    @strawberry.mutation(description="Terminates (or cancels, while pending) one of the caller's sessions: "
                         "`sessionId` is its id, a unique id prefix or its name; the result carries its id.")
    async def terminate_session(self, info: Info, session_id: str) -> SessionCommandResult:
        principal = caller(info)
        resources = info.context.resources
        session_id = (await resolve_owned_session(info, session_id)).id
        try:
            position = await resources.session_terminations.submit((session_id, make_context(principal.access_key)))
        except DomainError as exc:
            raise from_domain(exc) from exc
        return SessionCommandResult(session_id=session_id, position=position or 0)
