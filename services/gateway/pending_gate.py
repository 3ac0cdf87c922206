"""One enqueue at a time per keypair whose resource policy limits its pending sessions.

``max_pending_session_count`` and ``max_pending_session_resource_slots`` are checked against the
``sessions`` read model. Two requests that both counted before either was recorded both passed (six
concurrent creates under a limit of 2 left 3 pending), and a request counted before the read models
had the one admitted just before it. So a limited keypair's requests pass ``PendingGate.turn`` one at a
time, each counting once the read models reached the event store's position and recording before the
next one counts (``services.gateway.sessions.enqueue.enqueued``). Keypairs without such a limit take no
turn and wait for nothing. The turns are those of one gateway process: a keypair that sends to N gateway
processes at once could pass its limit by N - 1.
"""

from __future__ import annotations

from services.gateway.keyed_turns import KeyedTurns

__all__ = ["PendingGate"]


class PendingGate(KeyedTurns):
    """A lock per keypair (``turn(access_key)``), kept only while some request holds or awaits it."""

    def __init__(self) -> None:
        super().__init__(1)
