"""Events of the tenancy context. Secrets never appear in events."""

from __future__ import annotations

from enum import Enum

from contracts.envelope import Event

__all__ = ["KeypairCreated", "KeypairDeactivated", "Role"]


class Role(str, Enum):
    SUPERADMIN = "superadmin"
    ADMIN = "admin"
    USER = "user"


class KeypairCreated(Event, frozen=True, kw_only=True, tag="keypair.created"):
    """The aggregate id is the access key; the secret key is kept outside the event store."""

    user: str
    role: Role


class KeypairDeactivated(Event, frozen=True, kw_only=True, tag="keypair.deactivated"):
    pass
