"""A stand-in for the agent's ``Reporter`` (no NATS): keeps what would be published, in order."""

from __future__ import annotations

import asyncio

from contracts.reports import Report

__all__ = ["RecordingReporter"]


class RecordingReporter:
    """Records every report sent or posted as ``(message id, report)``, in order. Each has its ack
    in ``acks``, resolved at once unless ``hold_acks``: then ``send`` waits for its ack as the real
    one waits for the stream's, and the test resolves them (``release``)."""

    def __init__(self, agent_id: str = "a1", *, hold_acks: bool = False) -> None:
        self.agent_id = agent_id
        self.sent: list[tuple[str, Report]] = []
        self.acks: list[asyncio.Future[object]] = []
        self._hold_acks = hold_acks

    async def send(self, report: Report, msg_id: str) -> None:
        await (await self._record(report, msg_id))

    async def _record(self, report: Report, msg_id: str) -> asyncio.Future[object]:
        self.sent.append((msg_id, report))
        ack: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if not self._hold_acks:
            ack.set_result(None)
        self.acks.append(ack)
        return ack

    def release(self) -> None:
        """Acknowledges every report recorded so far and, from now on, every new one at once."""
        self._hold_acks = False
        for ack in self.acks:
            if not ack.done():
                ack.set_result(None)

    async def send_kernel(self, report: Report, kernel_id: str) -> None:
        await self.send(report, self.kernel_msg_id(report, kernel_id))

    async def post_kernel(self, report: Report, kernel_id: str) -> asyncio.Future[object]:
        return await self._record(report, self.kernel_msg_id(report, kernel_id))

    def kernel_msg_id(self, report: Report, kernel_id: str, step: str = "") -> str:
        return f"{self.agent_id}:{kernel_id}:{report.type_name()}{f':{step}' if step else ''}"

    @property
    def reports(self) -> list[Report]:
        return [report for _, report in self.sent]

    def kinds(self) -> list[str]:
        return [report.type_name() for _, report in self.sent]
