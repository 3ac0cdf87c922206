"""The catalog of all event types: one decoder for the whole history (older shapes upcast)."""

from __future__ import annotations

from typing import Union

import msgspec

from contracts import agent, quota, session, session_names, tenancy, vfolder, vfolder_count
from contracts.envelope import Event
from contracts.upcasts import upcast

__all__ = ["ALL_EVENTS", "AnyEvent", "decode_event", "encode_event", "event_class"]

ALL_EVENTS: tuple[type[Event], ...] = (
    session.SessionRequested,
    session.SessionScheduled,
    session.KernelPreparing,
    session.KernelProgressed,
    session.KernelCreating,
    session.KernelStarted,
    session.KernelTerminated,
    session.SessionStatusChanged,
    session.ExecutionFinished,
    session.SessionPendingReasonChanged,
    session_names.SessionNameClaimed,
    agent.AgentRegistered,
    agent.AgentCapacityChanged,
    agent.KernelAssigned,
    agent.KernelTerminationRequested,
    agent.KernelReleased,
    agent.OrphanContainerDestroyed,
    agent.AgentLost,
    agent.AgentRecovered,
    tenancy.DomainCreated,
    tenancy.DomainUpdated,
    tenancy.ProjectCreated,
    tenancy.ProjectUpdated,
    tenancy.UserCreated,
    tenancy.UserDeactivated,
    tenancy.KeypairCreated,
    tenancy.KeypairDeactivated,
    tenancy.KeypairPolicyChanged,
    tenancy.ResourcePolicyCreated,
    tenancy.ResourcePolicyUpdated,
    tenancy.ResourceGroupCreated,
    tenancy.ResourceGroupUpdated,
    quota.QuotaConsumed,
    quota.QuotaReleased,
    tenancy.ProjectStorageLimitSet,
    *vfolder.ALL_VFOLDER_EVENTS,
    vfolder_count.VFolderCountChanged,
)

AnyEvent = Union[ALL_EVENTS]  # type: ignore[valid-type]

_BY_NAME = {cls.type_name(): cls for cls in ALL_EVENTS}
_decoder = msgspec.json.Decoder(AnyEvent)
_encoder = msgspec.json.Encoder(decimal_format="string")


def encode_event(event: Event) -> bytes:
    """Returns the canonical JSON bytes of an event (stored and published as is)."""
    return _encoder.encode(event)


def decode_event(data: bytes) -> Event:
    """Returns the event in ``data`` (an older stored shape upcast to the current one, see
    ``contracts.upcasts``); raises ``msgspec.ValidationError``/``DecodeError`` on bad input."""
    try:
        return _decoder.decode(data)
    except msgspec.ValidationError as refused:
        current = upcast(msgspec.json.decode(data))
        if current is None:
            raise
        try:
            return msgspec.convert(current, _BY_NAME[current["type"]])
        except msgspec.ValidationError:
            raise refused from None


def event_class(type_name: str) -> type[Event]:
    """Returns the event class of a stable type name; raises ``KeyError`` when unknown."""
    return _BY_NAME[type_name]
