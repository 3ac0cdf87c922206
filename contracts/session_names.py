"""Events of the session-name context: a name claimed by one session of its owner.

Session names are unique per owner among live sessions (Backend.AI's rule). One small
aggregate per (owner, name), id ``sname_<digest>`` (``name_claim_id``), records which
session holds the name; its claim is saved in the same transaction as the session's
``session.requested``. A claim is never released: the next claim supersedes it once its
holder has ended, and two concurrent claims of one name conflict on the aggregate's
version, so exactly one of them is recorded.
"""

from __future__ import annotations

import hashlib

from contracts.envelope import Event

__all__ = ["SessionNameClaimed", "name_claim_id"]


def name_claim_id(owner: str, name: str) -> str:
    """Returns the aggregate id of the claim of ``name`` by ``owner`` (an access key): a digest,
    so any name and owner give a valid subject token."""
    digest = hashlib.sha256(f"{owner}\x00{name}".encode()).hexdigest()[:40]
    return f"sname_{digest}"


class SessionNameClaimed(Event, frozen=True, kw_only=True, tag="sessionname.claimed"):
    """``session_id`` holds ``name`` for ``owner`` from now on (until it ends and another claims it)."""

    owner: str
    name: str
    session_id: str
