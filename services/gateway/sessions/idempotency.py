"""``createSession``'s idempotency key: a retried request creates one session.

A client sends an ``idempotencyKey`` (any 1 to 128 visible ASCII characters; the CLI draws a random
one per session it means to create and keeps it across its retries). The session's id is derived
from the caller's access key and the key (a UUIDv5), so the session itself records the key: nothing
else is stored, nothing is lost on a restart, and nothing grows but the sessions. A request whose
derived session exists returns that session (id and the current event-store position, for
``afterPosition``) and records nothing; two concurrent ones race on the aggregate's first version
and the loser returns the winner's session. Keys are scoped per keypair (another keypair's same key
is another session) and never expire: a key means one session for good, so use a new key for a
new session (reusing one returns the old session, whatever the input).
"""

from __future__ import annotations

import re
import uuid

from services.gateway.auth.principal import Principal
from services.gateway.context import Info
from services.gateway.errors import BAD_INPUT, CONFLICT, GatewayError
from services.gateway.sessions.types import SessionCommandResult

__all__ = ["MAX_KEY", "earlier_request", "session_id_for"]

MAX_KEY = 128
_KEY = re.compile(r"[\x21-\x7e]{1,%d}" % MAX_KEY)
_NAMESPACE = uuid.UUID("5f2b8c1e-3f4a-4c7e-9a51-6d0e2b7c9f10")
"""The UUIDv5 namespace of session ids derived from idempotency keys (fixed: changing it would
make retries of earlier requests create new sessions)."""


def session_id_for(access_key: str, key: str) -> str:
    """Returns the id of the session that ``key`` of ``access_key`` stands for; BAD_INPUT for a bad key."""
    if not _KEY.fullmatch(key):
        raise GatewayError(BAD_INPUT, f"idempotencyKey must be visible ASCII characters, at least 1 and at most {MAX_KEY}")
    return uuid.uuid5(_NAMESPACE, f"{access_key}\n{key}").hex


async def earlier_request(info: Info, principal: Principal, session_id: str) -> SessionCommandResult | None:
    """Returns the result of the request that already created ``session_id``, None when none did."""
    resources = info.context.resources
    state = await resources.call(resources.sessions.get, session_id)
    if state is None:
        return None
    if state.owner != principal.access_key:  # a derived id is the caller's; anything else is a collision
        raise GatewayError(CONFLICT, "idempotencyKey clashes with another session: use another key")
    return SessionCommandResult(session_id=session_id, position=await resources.call(resources.sessions.position))
