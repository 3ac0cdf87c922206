"""``berth logs -f``: follows a session's main-kernel log through the ``sessionLogs`` query.

The agent answers with the whole log it keeps (its last MiB, or what fits in one NATS message),
so following is polling: each poll prints what follows the text already shown. While the log
still fits, the new text starts with the old; once it is cut at the front, the last part of the
old text is found in the new one (:func:`new_part`). Following ends after the last poll once the
session has ended, as ``docker logs -f`` ends with its container, saying so on stderr with the status
it ended in (:func:`ended_line`): an end in silence read as a log that merely went quiet, or as a hang.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from services.cli import queries as q
from services.cli.sessions_common import GONE, fetch_session, outcome
from services.sdk.client import BerthAPIError, BerthClient

__all__ = ["ANCHOR", "ended_line", "follow_logs", "new_part"]

ANCHOR = 4096
"""Characters at the end of the text already shown that locate it in a log cut at the front."""


def new_part(shown: str, text: str) -> tuple[str, bool]:
    """Returns what ``text`` (the log now) adds to ``shown`` (the log printed so far), and whether
    some of it may have been lost (the log moved on by more than it keeps between two polls)."""
    if text.startswith(shown):
        return text[len(shown):], False
    anchor = shown[-ANCHOR:]
    at = text.rfind(anchor)
    if at >= 0:
        return text[at + len(anchor):], False
    return text, True


def ended_line(session: dict[str, Any]) -> str:
    """Returns the line that ends a follow: the session (by name, else id), the status it ended in with its
    reason and detail, and its main kernel's exit code when it has one (a batch session's command)."""
    ref = session.get("name") or session["id"]
    main = next((k for k in session.get("kernels") or [] if k.get("clusterRole") == "main"), None)
    code = main.get("exitCode") if main else None
    return f"berth: session {ref} ended: {outcome(session)}" + ("" if code is None else f", exit code {code}")


async def _log(client: BerthClient, session_id: str) -> str:
    return (await client.execute(q.SESSION_LOGS, {"id": session_id}))["sessionLogs"] or ""


async def follow_logs(client: BerthClient, session_id: str, write: Callable[[str], None],
                      warn: Callable[[str], None], poll: float = 1.0) -> None:
    """Writes the session's log, then what is added to it every ``poll`` seconds, until the session has
    ended (then ``warn`` says so and how: :func:`ended_line`); a session not placed on an agent yet has an
    empty log. ``session_id`` may be any reference the gateway resolves (id, prefix, name); the session it
    means first is followed."""
    shown = ""
    while True:
        session = await fetch_session(client, session_id, None)
        session_id, status = session["id"], session["status"]
        try:
            text = await _log(client, session_id)
        except BerthAPIError as exc:
            if status in GONE:
                warn(ended_line(session))
                return
            if exc.code != "CONFLICT":  # CONFLICT: no main kernel on an agent yet
                raise
            text = shown
        part, lost = new_part(shown, text)
        if lost:
            warn("berth: the log moved on faster than it was polled; some lines were skipped")
        if part:
            write(part)
        shown = text
        if status in GONE:
            warn(ended_line(session))
            return
        await asyncio.sleep(poll)
