"""What is left to do once a run's stream ends: its output subscription ended and, when its client went away
before its ``done``, the run interrupted (``cancel``: the agent stops streaming it, the runner interrupts it).

``end_run`` does it in a task of its own that the gateway keeps (and waits for when it stops: ``settle``), never
in the stream's: the websocket handler cancels a stream's task when its client goes (at ``complete``, or when the
connection drops, even while the stream's ``finally`` is already running after a failed send), and a cleanup
awaited there could be cut short, leaving the run going and its subscription open. The interrupt is asked again
while the agent says it cannot take it now or does not answer; a refusal for good, or the last failure, is logged.
(Of 16 clients gone at once, 8 had their interrupt refused when the agent counted interrupts among the exec
requests it handles at once per kernel, and those runs went on until their session ended; it answers those of
runs streaming through it at once now, and bounds only those it must ask a runner for on a connection of their
own: ``services.agent.exec_server``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.client import Client as Nats
from nats.aio.subscription import Subscription

from services.gateway.errors import GatewayError
from services.gateway.execution.agent_calls import interruption, request_agent

__all__ = ["INTERRUPT_TRIES", "RETRY_PAUSE", "end_run", "settle"]

log = logging.getLogger(__name__)

INTERRUPT_TRIES = 6
"""Times the interrupt of a run whose client went away is asked for, while the agent refuses it for now or is silent."""
RETRY_PAUSE = 0.25
"""Seconds before the second try; doubled before each next one (0.25 s ... 4 s: about 8 s in all, beside answers)."""
_RETRIED = ("try again", "cannot reach the runner")
"""What an agent's refusal says when the same interrupt may be taken later (its bounds were full, the runner busy)."""

_ENDING: set[asyncio.Task[None]] = set()


async def settle(timeout: float) -> None:
    """Waits up to ``timeout`` seconds for the ends of runs under way (a gateway stopping: their interrupts sent)."""
    loop = asyncio.get_running_loop()
    under_way = {task for task in _ENDING if task.get_loop() is loop}
    if under_way:
        await asyncio.wait(under_way, timeout=timeout)


def end_run(nc: Nats, sub: Subscription, agent_id: str, kernel_id: str, run_id: str, interrupt: bool) -> None:
    """Ends the run's subscription and, with ``interrupt``, interrupts the run, in a task the gateway keeps until it
    is done: a cancellation of the caller does not cut it short."""
    task = asyncio.get_running_loop().create_task(_end(nc, sub, agent_id, kernel_id, run_id, interrupt),
                                                  name=f"end-run-{run_id}")
    _ENDING.add(task)
    task.add_done_callback(_ENDING.discard)


async def _end(nc: Nats, sub: Subscription, agent_id: str, kernel_id: str, run_id: str, interrupt: bool) -> None:
    with contextlib.suppress(Exception):  # closed already, or the connection is: nothing more arrives
        await sub.unsubscribe()
    if interrupt:
        await _interrupt(nc, agent_id, kernel_id, run_id)


async def _interrupt(nc: Nats, agent_id: str, kernel_id: str, run_id: str) -> None:
    """Interrupts a run whose client went away, retrying while the agent cannot take it now; logs a failure."""
    why = ""
    for attempt in range(INTERRUPT_TRIES):
        if attempt:
            await asyncio.sleep(RETRY_PAUSE * 2 ** (attempt - 1))
        try:
            answer = await request_agent(nc, agent_id, interruption(kernel_id, run_id, cancel=True))
        except GatewayError as exc:
            why = exc.message
            continue
        except Exception as exc:  # noqa: BLE001 - the bus is closed or reconnecting: try again, then log
            why = f"{type(exc).__name__}: {exc}"
            continue
        if answer.ok:
            return
        why = answer.error or "refused"
        if not any(word in why for word in _RETRIED):
            log.info("run %s of kernel %s (its client went away) was not interrupted: %s", run_id, kernel_id, why)
            return
    log.warning("could not interrupt run %s of kernel %s after its client went away (%d tries): %s; it may go on in "
                "the kernel", run_id, kernel_id, INTERRUPT_TRIES, why)
