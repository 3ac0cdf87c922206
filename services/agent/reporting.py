"""Publishes the agent's reports to the REPORTS work queue, deduplicated by message id."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import Header

from contracts.reports import Report, encode_report
from contracts.subjects import report_subject

__all__ = ["Reporter"]


class Reporter:
    """Sends reports of one agent on ``rp.agent.<agent_id>.<type>``."""

    def __init__(self, js: JetStreamContext, agent_id: str) -> None:
        self._js = js
        self.agent_id = agent_id

    async def send(self, report: Report, msg_id: str) -> None:
        """Publishes ``report`` and waits for the stream's ack. The same ``msg_id`` sent again
        within the stream's duplicate window is stored once, so a redelivered assignment
        never duplicates a report."""
        await self._js.publish(
            report_subject(self.agent_id, report.type_name()),
            encode_report(report),
            headers={Header.MSG_ID.value: msg_id},
        )

    async def send_kernel(self, report: Report, kernel_id: str) -> None:
        """Publishes a kernel report with the id ``<agent>:<kernel>:<type>``: one per kernel and step."""
        await self.send(report, f"{self.agent_id}:{kernel_id}:{report.type_name()}")
