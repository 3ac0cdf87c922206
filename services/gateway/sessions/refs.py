"""Session references: every argument of the API that names a session takes its id, a unique id
prefix (at least 4 characters) or its name, resolved here, once per request, within what the
caller may see (a user: its own sessions; an admin: its domain's but a superadmin's; a superadmin:
all: ``ownership.session_scope``).

The rule (also in the README):

1. a session whose id is the reference (names never have the form of an id);
2. else the one session among the live sessions named so and the sessions whose id starts with
   the reference (at least 4 characters); several are an ``AMBIGUOUS`` error that lists them;
3. else the one ended session named so (several: ``AMBIGUOUS``);
4. else nothing (the callers answer ``NOT_FOUND``, or null).

Names and prefixes are looked up in the read models (``projections.session_refs``). The commands
(``resolve_session_id``: mutations, subscriptions, logs) look a reference of the form of an id up in
the event store, which is never behind; for a name or prefix that matches nothing while the read
models are behind the event store, they wait for them once (bounded by the gateway's read wait,
READ_MODEL_BEHIND after it), so a name given a moment ago is found. The ``session`` query answers
from the read models as they are (``afterPosition`` waits, as for every query).
"""

from __future__ import annotations

import re
from typing import Any

from domain.session import SessionState
from domain.session_names import ID_FORM
from projections.session_refs import MAX_CANDIDATES
from services.gateway.context import Info, caller
from services.gateway.errors import AMBIGUOUS, BAD_INPUT, NOT_FOUND, GatewayError
from services.gateway.readmodels import read_position, wait_for_position
from services.gateway.sessions import readmodels as rm
from services.gateway.sessions.ownership import owned_session, session_scope, visible_session

__all__ = ["AmbiguousSessionError", "checked_ref", "find_session", "resolve_owned_session", "resolve_session_id"]

MAX_REF = 128
_REF = re.compile(r"[A-Za-z0-9._-]{1,%d}" % MAX_REF)
_LIVE_MATCHES = ("name", "prefix")


class AmbiguousSessionError(GatewayError):
    """A reference that matches several sessions; ``extensions.candidates`` lists them."""

    def __init__(self, ref: str, candidates: list[dict[str, Any]], more: bool) -> None:
        lines = "\n".join(f"  {row['session_id']}  {row['name']}  {row['status']}" for row in candidates)
        tail = "\n  ... and more" if more else ""
        super().__init__(AMBIGUOUS, f"session {ref!r} is ambiguous: it matches {len(candidates)}{'+' if more else ''} "
                         f"sessions (give the full id or a longer prefix):\n{lines}{tail}")
        self.candidates = [{"id": row["session_id"], "name": row["name"], "status": row["status"],
                            "owner": row["owner"]} for row in candidates]

    @property
    def extensions(self) -> dict[str, Any]:
        return {"code": self.code, "candidates": self.candidates}


def checked_ref(ref: str, what: str = "session id") -> str:
    """Returns ``ref`` when it can name a session; BAD_INPUT otherwise."""
    if not isinstance(ref, str) or not _REF.fullmatch(ref):
        shown = repr(ref) if len(str(ref)) <= 80 else f"{str(ref)[:80]!r}... ({len(str(ref))} characters)"
        raise GatewayError(BAD_INPUT, f"invalid {what} {shown}: give a session id, a unique id prefix (at least 4 "
                           f"characters) or a session name: 1-{MAX_REF} letters, digits, '.', '_' or '-'")
    return ref


def _distinct(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for row in rows:
        seen.setdefault(row["session_id"], row)
    return list(seen.values())


async def find_session(info: Info, ref: str, what: str = "session id", *, catch_up: bool = False) -> dict[str, Any] | None:
    """Returns the read-model row of the session ``ref`` means among those the caller may see,
    None when it means none; raises ``AmbiguousSessionError`` when it means several. With
    ``catch_up``, a miss while the read models are behind the event store waits for them once."""
    principal = caller(info)
    resources = info.context.resources
    rows = await rm.match_sessions(resources.pool, checked_ref(ref, what), **session_scope(principal))
    if not rows and catch_up:  # read-your-writes: a session requested a moment ago may not be projected yet
        position = await resources.call(resources.sessions.position)
        if await read_position(resources.pool) < position:
            await wait_for_position(resources, position)
            rows = await rm.match_sessions(resources.pool, ref, **session_scope(principal))
    exact = [row for row in rows if row["matched"] == "id"]
    if exact:
        return exact[0]
    for kinds in (_LIVE_MATCHES, ("ended name",)):
        matching = [row for row in rows if row["matched"] in kinds]
        candidates = _distinct(matching)
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            more = any(sum(row["matched"] == kind for row in matching) > MAX_CANDIDATES for kind in kinds)
            newest = sorted(candidates, key=lambda row: (row["created_at"], row["session_id"]), reverse=True)
            raise AmbiguousSessionError(ref, newest[:MAX_CANDIDATES], more or len(newest) > MAX_CANDIDATES)
    return None


async def resolve_session_id(info: Info, ref: str, what: str = "session id") -> str:
    """Returns the id of the session ``ref`` means among those the caller may see; raises
    NOT_FOUND (``session <ref> not found``), AMBIGUOUS or BAD_INPUT.

    A reference of the form of an id is looked up in the event store only (never behind, and no
    name has that form); anything else in the read models."""
    return (await _resolved(info, ref, what))[0]


async def resolve_owned_session(info: Info, ref: str) -> SessionState:
    """Returns the session ``ref`` means (as ``resolve_session_id``) from the event store, if the
    caller may see it; NOT_FOUND otherwise. A reference of the form of an id is read once."""
    session_id, state = await _resolved(info, ref, "session id")
    return state if state is not None else await owned_session(info, session_id)


async def _resolved(info: Info, ref: str, what: str) -> tuple[str, SessionState | None]:
    """Returns the id ``ref`` means, with its state when it was read from the event store to find it."""
    caller(info)
    if ID_FORM.fullmatch(checked_ref(ref, what)):
        if (state := await visible_session(info, ref)) is not None:
            return ref, state
    else:
        row = await find_session(info, ref, what, catch_up=True)
        if row is not None:
            return str(row["session_id"]), None
    raise GatewayError(NOT_FOUND, f"session {ref} not found")
