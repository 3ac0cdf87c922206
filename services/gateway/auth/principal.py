"""Who is calling: the authenticated keypair and its role."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.tenancy import Role

__all__ = ["AuthError", "Principal"]


class AuthError(Exception):
    """Raised when a request cannot be authenticated; the message says why (never a secret)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: its access key, user and role."""

    access_key: str
    user_id: str
    role: Role

    @property
    def is_admin(self) -> bool:
        """Returns True for ``admin`` and ``superadmin``: they see every tenant's sessions."""
        return self.role in (Role.ADMIN, Role.SUPERADMIN)

    def may_see(self, owner: str) -> bool:
        """Returns True when this caller may see a session owned by ``owner``."""
        return self.is_admin or owner == self.access_key
