"""Who is calling: the authenticated keypair, its user, role and domain, and what it may see."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.tenancy import DEFAULT_DOMAIN, Role

__all__ = ["AUTH_FAILED", "AuthError", "Principal"]

AUTH_FAILED = "authentication failed"
"""The one answer a client gets for every authentication failure (an unknown key, a bad signature, an old
date, ...): it tells an attacker nothing about which keys exist. The reason goes to the gateway's log."""


class AuthError(Exception):
    """Raised when a request cannot be authenticated; the message says why (never a secret) and is only
    logged: the client is told ``AUTH_FAILED``."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: its access key, user, role (its user's) and domain."""

    access_key: str
    user_id: str
    role: Role
    domain: str = DEFAULT_DOMAIN
    limits_epoch: int = 0
    """The limits epoch when this caller was authenticated (``services.gateway.auth.limits_epoch``):
    policy limits cached at an older epoch are not used for its request."""
    token_hash: str | None = None
    """The SHA-256 of the bearer token this caller was authenticated with (None: a signed request): a websocket it
    opened ends when that token expires (``services.gateway.auth.revocation``)."""

    @property
    def is_admin(self) -> bool:
        """Returns True for ``admin`` (of its domain) and ``superadmin``."""
        return self.role in (Role.ADMIN, Role.SUPERADMIN)

    @property
    def is_superadmin(self) -> bool:
        """Returns True for ``superadmin``: it sees and manages everything."""
        return self.role is Role.SUPERADMIN

    def may_see(self, owner: str, domain: str, owner_role: Role | None) -> bool:
        """Returns True when this caller may see (and touch) a session of ``owner`` (an access key)
        in ``domain`` whose keypair has ``owner_role`` (None: unknown): a user only their own, an admin
        those of its domain but a superadmin's (no admin acts on a superadmin, as in tenancy), a
        superadmin all. The role matters only where ``reaches_as_admin`` says so."""
        if self.is_superadmin or owner == self.access_key:
            return True
        return self.reaches_as_admin(owner, domain) and owner_role is not Role.SUPERADMIN

    def reaches_as_admin(self, owner: str, domain: str) -> bool:
        """Returns True when this caller reaches a session of ``owner`` in ``domain`` only as the admin
        of its domain: then the owner's role decides (``may_see``), and only then is it worth reading."""
        return self.role is Role.ADMIN and domain == self.domain and owner != self.access_key

    def manages(self, domain: str) -> bool:
        """Returns True when this caller administers ``domain`` (superadmin, or admin of it)."""
        return self.is_superadmin or (self.role is Role.ADMIN and domain == self.domain)
