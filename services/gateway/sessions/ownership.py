"""The one ownership check: which sessions a caller may see and touch.

A user sees its own sessions (by access key), an admin those of its domain but a superadmin's
(no admin acts on a superadmin: tenancy's ``unless_superadmin_target``), a superadmin all
(``Principal.may_see``). ``owned_session`` is that rule on the write side (load from the event
store, NOT_FOUND when missing or not the caller's, so that another's session is never revealed);
the owner's role is read (its keypair's, from the store: a snapshot, and roles never change) only
when the caller reaches the session as its domain's admin. ``session_scope`` is the same rule as a
read-model filter: by owner and domain, and for an admin no session whose owner's keypair is a
superadmin's (``hide_superadmins``), so that what an admin may not act on it does not read either.
"""

from __future__ import annotations

from typing import Any

from domain.session import SessionState
from services.gateway.auth.principal import Principal
from services.gateway.context import Info, caller
from services.gateway.errors import NOT_FOUND, GatewayError

__all__ = ["owned_session", "session_scope", "visible_session"]


def session_scope(principal: Principal) -> dict[str, Any]:
    """Returns the read-model filter of the sessions ``principal`` may see: ``owner`` (an access
    key) and ``domain``, each None when not restricted, and ``hide_superadmins`` (an admin's: no
    superadmin's session, as ``Principal.may_see``)."""
    if principal.is_superadmin:
        return {"owner": None, "domain": None, "hide_superadmins": False}
    if principal.is_admin:
        return {"owner": None, "domain": principal.domain, "hide_superadmins": True}
    return {"owner": principal.access_key, "domain": None, "hide_superadmins": False}


async def visible_session(info: Info, session_id: str) -> SessionState | None:
    """Returns the session ``session_id`` from the event store if the caller may see it, else None."""
    principal = caller(info)
    resources = info.context.resources
    state = await resources.call(resources.sessions.get, session_id)
    if state is None:
        return None
    owner_role = None
    if principal.reaches_as_admin(state.owner, state.spec.domain):
        owner_role = await resources.call(resources.tenancy.keypair_role, state.owner)
    return state if principal.may_see(state.owner, state.spec.domain, owner_role) else None


async def owned_session(info: Info, session_id: str) -> SessionState:
    """Returns the session ``session_id`` if the caller may see it; NOT_FOUND otherwise."""
    state = await visible_session(info, session_id)
    if state is None:
        raise GatewayError(NOT_FOUND, f"session {session_id} not found")
    return state
