"""A run's output between its agent and a client that may read it more slowly than it comes.

The agent streams a run's output over core NATS (no flow control) at its runner's rate, at most
``OUTPUT_RATE`` (1 MiB/s) per run; the client reads it over its websocket at its own pace, which can
be none for a while (a terminal paused, a pager waiting, a slow link). ``read_run`` takes the messages
off the subscription as they come, in order of ``seq``, into a ``RunOutput``: at most ``MAX_BUFFERED``
characters of output wait for the client; past that, new output is dropped and counted, and the client
finds, where it was dropped, one line on stderr saying how much and why. The run's ``done`` is never
dropped here.

Before that, nats-py queues the subscription's messages until ``read_run`` takes them, which it does as fast as
the gateway's event loop lets it; a gateway that cannot keep up (many runs flooding at once) would queue up to
nats-py's default 64 MiB per run, kept for good by the process (1.2 GB after a few rounds of 16 flooding runs).
``subscribe_run`` bounds that queue (``RUN_PENDING_BYTES``, ``RUN_PENDING_MSGS``); past it nats-py drops the
run's messages (and says so as a slow consumer), never the connection. ``read_run`` finds the drop as a gap in
``seq``: the messages missing once ``REORDER_WINDOW`` later ones came, or ``GAP_WAIT`` seconds after the run's
``done``, are lost; the client finds a line on stderr where they were, and ``truncated`` on ``done``. A lost
``done`` ends the stream as a run lost does (``runs._messages``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import msgspec
import nats.errors
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from contracts.execution import ExecChunk, ExecDone, ExecOutput, output_dropped_note
from services.common.backlog import Backlog
from services.gateway.errors import UNAVAILABLE, GatewayError

__all__ = ["GAP_WAIT", "MAX_BUFFERED", "REORDER_WINDOW", "RUN_PENDING_BYTES", "RUN_PENDING_MSGS", "RunOutput",
           "SUBSCRIBED_WITHIN", "dropped_note", "lost_note", "read_run", "subscribe_run"]

MAX_BUFFERED = 1 << 20
"""Characters of a run's output held for a client that reads more slowly than the run writes: a second of
the runner's rate (beside what the connection's buffers hold). No more: a caller may hold 64 streams whose
clients never read (64 MiB, as when each run's output was cut at 1 MiB). ``berth exec`` reads its websocket
whatever its stdout does, and holds up to 64 M characters itself (``services.cli.exec_cmd.BACKLOG``)."""


RUN_PENDING_BYTES = 4 << 20
"""Bytes of a run's messages nats-py may queue for ``read_run`` (4 s of the runner's rate); past it they are dropped."""
RUN_PENDING_MSGS = 8192
"""Messages of a run nats-py may queue for ``read_run``."""
REORDER_WINDOW = 64
"""Messages that may come before one missing; past them, the missing ones are taken as lost."""
GAP_WAIT = 1.0
"""Seconds the messages missing before a run's ``done`` are waited for."""
SUBSCRIBED_WITHIN = 5.0
"""Seconds nats-server has to confirm a run's subscription (``subscribe_run``), as an agent has to accept a run."""


async def subscribe_run(nc: Nats, subject: str) -> Subscription:
    """Subscribes to a run's output, its queue in nats-py bounded (see the module), and returns once nats-server has
    the subscription: the output has a connection of its own (``Resources.output_nats``), the run is asked for on
    another, so without the round trip the agent's first messages could reach the server before the subscription.
    UNAVAILABLE, nothing subscribed, when the server does not confirm it within ``SUBSCRIBED_WITHIN`` seconds (that
    connection is away, or behind on output): the caller asks for no run then."""
    sub: Subscription | None = None
    try:
        sub = await nc.subscribe(subject, pending_msgs_limit=RUN_PENDING_MSGS, pending_bytes_limit=RUN_PENDING_BYTES)
        await nc.flush(timeout=SUBSCRIBED_WITHIN)
    except (nats.errors.TimeoutError, nats.errors.ConnectionClosedError):
        if sub is not None:
            with contextlib.suppress(Exception):  # closed already: nothing to end
                await sub.unsubscribe()
        raise GatewayError(UNAVAILABLE, "the gateway's connection for runs' output is not ready (NATS away or "
                                        "reconnecting): nothing was run, try again") from None
    return sub


def lost_note(messages: int) -> str:
    """The line a client finds where messages of its run were lost on their way through the gateway."""
    return (f"\nberth: {messages:,} messages of output lost here: they came faster than the gateway could pass them "
            "on\n")


def dropped_note(characters: int) -> str:
    """The line a client finds where output was dropped."""
    return output_dropped_note(characters, "this client")


class RunOutput(Backlog[ExecChunk | ExecDone]):
    """The items of one run waiting for its client, at most ``limit`` (default ``MAX_BUFFERED``) characters
    of output; filled by ``read_run``, emptied by iterating; ``done`` is never dropped."""

    def __init__(self, limit: int | None = None) -> None:
        super().__init__(MAX_BUFFERED if limit is None else limit, _characters, _note, _is_done)
        self.lost = 0
        """Messages of the run lost before they reached the gateway's reader (``read_run``)."""

    @property
    def truncated(self) -> bool:
        """Whether some of the run's output did not reach its client (dropped here, or lost before)."""
        return self.dropped > 0 or self.lost > 0


def _characters(item: ExecChunk | ExecDone) -> int | None:
    return len(item.data) if isinstance(item, ExecChunk) else None


def _note(dropped: int, before: ExecChunk | ExecDone) -> ExecChunk:
    return ExecChunk(seq=before.seq, stream="stderr", data=dropped_note(dropped))


def _is_done(item: ExecChunk | ExecDone) -> bool:
    return isinstance(item, ExecDone)


async def read_run(messages: AsyncIterator[Msg], output: RunOutput) -> None:
    """Puts the run's messages into ``output`` in order of ``seq`` (one that comes early waits for those
    before it, unless they are lost: see the module), up to ``done``; an error of ``messages`` (the run lost,
    the session ended) goes to ``output``."""
    order = _Order(output)
    try:
        while not order.ended:
            try:
                async with asyncio.timeout(GAP_WAIT if order.done_waits else None):
                    msg = await anext(messages)
            except TimeoutError:  # what is missing before the run's done is not coming: lost
                order.flush()
                return
            except StopAsyncIteration:
                return
            order.add(msgspec.json.decode(msg.data, type=ExecOutput))
    except Exception as exc:  # noqa: BLE001 - told to the client through the stream, after what came before
        output.fail(exc)


class _Order:
    """Puts items into a run's output in order of ``seq``; skips the missing ones when they are lost."""

    def __init__(self, output: RunOutput) -> None:
        self._output = output
        self._early: dict[int, ExecOutput] = {}
        self._expected = 0
        self.ended = False

    @property
    def done_waits(self) -> bool:
        """Whether the run's ``done`` came and waits for items missing before it."""
        return any(isinstance(item, ExecDone) for item in self._early.values())

    def add(self, item: ExecOutput) -> None:
        if item.seq < self._expected:  # one taken as lost came after all: too late
            return
        self._early[item.seq] = item
        self._release()
        if len(self._early) > REORDER_WINDOW:
            self.skip_gap()

    def flush(self) -> None:
        """Puts what came into the output, the missing items taken as lost."""
        while self._early and not self.ended:
            self.skip_gap()

    def skip_gap(self) -> None:
        """Takes the items missing before the first that came as lost, and goes on from it."""
        first = min(self._early)
        self._output.lost += first - self._expected
        self._output.put(ExecChunk(seq=first, stream="stderr", data=lost_note(first - self._expected)))
        self._expected = first
        self._release()

    def _release(self) -> None:
        while not self.ended and self._expected in self._early:
            item = self._early.pop(self._expected)
            self._expected += 1
            self._output.put(item)
            self.ended = isinstance(item, ExecDone)
