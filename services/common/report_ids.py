"""Message ids of reports that no other identity on the bus can write first.

The REPORTS stream drops a message whose ``Nats-Msg-Id`` it stored in its duplicate window, whatever its subject: a
report sent again (an assignment redelivered to a restarted agent) is stored once. Ids made of what peers know
(``<agent>:<kernel>:<type>``, ``<volume>:<folder>:purged``) let another identity publish the same id first, on a
subject of its own: an agent of a cluster session made the stream drop another agent's ``kernel_running`` (the
session stayed SCHEDULED). ``ReportIds`` appends to each id a MAC keyed with the sender's bus credential (its file
holds the identity's private seed, which no peer has): stable across the sender's restarts, so the stream still
stores a report sent again once, and never guessed by another identity. Without a credential (an open bus, where
any client may publish anything) ids stay as they are.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from services.common.bus import CREDENTIALS_ENV

__all__ = ["MAC_CHARS", "ReportIds"]

MAC_CHARS = 24
"""Hex characters of the MAC appended (96 bits)."""


class ReportIds:
    """``ids(plain)``: the message id of a report whose peers-known id is ``plain``."""

    def __init__(self, key: bytes | None) -> None:
        self._key = key

    @classmethod
    def of_credentials(cls, credentials: str | Path | None = None) -> ReportIds:
        """Keyed with the credential file ``credentials`` (default ``$BERTH_NATS_CREDS``, as ``bus.connect``); unkeyed
        when there is none."""
        path = os.environ.get(CREDENTIALS_ENV, "") if credentials is None else str(credentials)
        return cls(Path(path).read_bytes() if path else None)

    def __call__(self, plain: str) -> str:
        if self._key is None:
            return plain
        return f"{plain}~{hmac.new(self._key, plain.encode(), hashlib.sha256).hexdigest()[:MAC_CHARS]}"
