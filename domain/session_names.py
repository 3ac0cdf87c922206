"""Session names: unique per owner among live sessions, and never mistaken for an id.

``claim`` decides whether a new session may take its name: it may when no live session of
the owner holds it (the previous holder, if any, has ended), and never when the name has the
form of a session id (32 lowercase hexadecimal digits), so that an id always means that
session. The use case saves the claim in the same transaction as ``session.requested``
(``contracts.session_names``).
"""

from __future__ import annotations

import re

from contracts.envelope import Event
from contracts.session_names import SessionNameClaimed, name_claim_id
from domain.emitting import Context, Emitter
from domain.errors import AlreadyExistsError, InvalidRequestError
from domain.session import SessionState

__all__ = ["ID_FORM", "check_name", "claim"]

ID_FORM = re.compile(r"[0-9a-f]{32}")
"""The form of a session id (``uuid4().hex``): no name may have it."""


def check_name(name: str) -> None:
    """Raises ``InvalidRequestError`` when ``name`` could be read as a session id."""
    if ID_FORM.fullmatch(name):
        raise InvalidRequestError(
            f"session name {name!r} has the form of a session id (32 hexadecimal digits): choose another name")


def claim(last: SessionNameClaimed | None, holder: SessionState | None, *, owner: str, name: str,
          session_id: str, ctx: Context) -> list[Event]:
    """Returns the event by which ``session_id`` claims ``name`` for ``owner``.

    ``last`` is the claim's latest event (None when the name was never claimed) and ``holder``
    the current state of the session it names. Raises ``AlreadyExistsError`` naming that session
    while it is live, ``InvalidRequestError`` when the name has the form of an id."""
    check_name(name)
    if last is not None and holder is not None and holder.id != session_id and not holder.status.is_terminal:
        raise AlreadyExistsError(
            f"session name {name!r} is already used by your session {holder.id} ({holder.status.value}); "
            "choose another name, or terminate that session first")
    emit = Emitter(name_claim_id(owner, name), last.originator_version if last is not None else 0, ctx)
    return [emit(SessionNameClaimed, owner=owner, name=name, session_id=session_id)]
