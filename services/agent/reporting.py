"""Publishes the agent's reports to the REPORTS work queue, deduplicated by message id.

A report the stream refuses for lack of room (``bus.REPORTS_MAX_PER_SUBJECT`` reports of its kind waiting on this
agent's subject, or ``bus.REPORTS_MAX_BYTES`` in all: the controller lags) raises ``transient.UnavailableError``
(NATS), as NATS away does: the agent's consumer tries the event again in place, with backoff, its delivery count
untouched, until the stream takes the report (its message id keeps it stored once); it is never dropped nor
dead-lettered for it. Progress reports are skipped (best effort); the reconciliation tries again at its next pass."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from nats.js import JetStreamContext
from nats.js.api import Header

from contracts.reports import Report, encode_report
from contracts.subjects import REPORTS_STREAM, report_subject
from services.common.bus import refused_for_room
from services.common.report_ids import ReportIds
from services.common.transient import NATS, UnavailableError

__all__ = ["ACK_TIMEOUT", "Reporter", "no_room", "settled", "stored"]

ACK_TIMEOUT = 5.0
"""Seconds the stream has to acknowledge a report posted without waiting (``Reporter.post``)."""


class Reporter:
    """Sends reports of one agent on ``rp.agent.<agent_id>.<type>``."""

    def __init__(self, js: JetStreamContext, agent_id: str, ids: ReportIds | None = None) -> None:
        """``ids`` makes the message ids (``report_ids``: keyed with the agent's credential, so that no other agent
        can have the stream drop this one's reports; default: unkeyed)."""
        self._js = js
        self.agent_id = agent_id
        self.ids = ids if ids is not None else ReportIds(None)

    async def send(self, report: Report, msg_id: str) -> None:
        """Publishes ``report`` and waits for the stream's ack. The same ``msg_id`` sent again
        within the stream's duplicate window is stored once, so a redelivered assignment
        never duplicates a report. ``UnavailableError`` when the stream has no room for it now."""
        try:
            await self._js.publish(
                report_subject(self.agent_id, report.type_name()),
                encode_report(report),
                headers={Header.MSG_ID.value: msg_id},
            )
        except Exception as exc:
            if refused_for_room(exc):
                raise no_room(exc) from exc
            raise

    async def send_kernel(self, report: Report, kernel_id: str) -> None:
        """Publishes a kernel report with the id ``<agent>:<kernel>:<type>``: one per kernel and step."""
        await self.send(report, self.kernel_msg_id(report, kernel_id))

    async def post_kernel(self, report: Report, kernel_id: str) -> Awaitable[object]:
        """Publishes a kernel report as ``send_kernel`` does but returns once it is on its way, with
        the stream's ack to await (``stored``): the work that follows does not wait a round trip
        per report. Reports published one after another on the agent's connection are stored in
        that order."""
        return await self._js.publish_async(
            report_subject(self.agent_id, report.type_name()),
            encode_report(report),
            headers={Header.MSG_ID.value: self.kernel_msg_id(report, kernel_id)},
        )

    def kernel_msg_id(self, report: Report, kernel_id: str, step: str = "") -> str:
        """Returns the message id of a kernel's report: ``<agent>:<kernel>:<type>[:<step>]`` with the agent's MAC."""
        return self.ids(f"{self.agent_id}:{kernel_id}:{report.type_name()}{f':{step}' if step else ''}")


async def stored(acks: list[Awaitable[object]], timeout: float = ACK_TIMEOUT) -> None:
    """Waits until the stream acknowledged every posted report; raises the first failure (or
    ``TimeoutError``) after ``timeout`` seconds. Every ack is awaited, failed or not."""
    if not acks:
        return
    async with asyncio.timeout(timeout):
        outcomes = await asyncio.gather(*acks, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and refused_for_room(outcome):
            raise no_room(outcome) from outcome
        if isinstance(outcome, BaseException):
            raise outcome


def no_room(error: BaseException) -> UnavailableError:
    """Returns the ``UnavailableError`` of NATS that the stream's refusal ``error`` of a report for lack of room
    (``bus.refused_for_room``) is raised as: waited out like an outage, never a failure of the report's kernel."""
    return UnavailableError(NATS, f"{REPORTS_STREAM} has no room for this agent's report now ({error}): the "
                                  "controller has not taken the reports waiting; sent again later")


async def settled(acks: list[Awaitable[object]], timeout: float = ACK_TIMEOUT) -> None:
    """Waits up to ``timeout`` seconds for the acks of posted reports, whatever they say (after a
    failed start, whose exit report is what counts); those still pending are cancelled."""
    if not acks:
        return
    futures = [asyncio.ensure_future(ack) for ack in acks]
    done, pending = await asyncio.wait(futures, timeout=timeout)
    for future in pending:
        future.cancel()
    for future in done:
        if not future.cancelled():
            future.exception()  # retrieved: a failed ack is no error here
