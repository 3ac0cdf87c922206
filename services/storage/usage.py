"""Measures folders' usage and reports it when it changed (after each change and periodically)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from contracts.vfolder import UsageMeasuredReport
from services.storage.reporting import Reporter, new_report_id, now_utc
from services.storage.volume import PosixVolume, VolumeError

__all__ = ["UsageMeter"]

log = logging.getLogger(__name__)


class UsageMeter:
    """Last reported (bytes, files) per folder; a report only when a measure differs."""

    def __init__(self, reporter: Reporter) -> None:
        self._reporter = reporter
        self._last: dict[str, tuple[int, int]] = {}

    def usage_of(self, folder_id: str) -> tuple[int, int] | None:
        return self._last.get(folder_id)

    def forget(self, folder_id: str) -> None:
        self._last.pop(folder_id, None)

    async def measure(self, volume: PosixVolume, folder_id: str) -> tuple[int, int] | None:
        """Measures one folder (in a thread) and posts a ``usage_measured`` report if it changed."""
        try:
            usage = await asyncio.to_thread(volume.usage, folder_id)
        except VolumeError:
            self._last.pop(folder_id, None)
            return None
        if self._last.get(folder_id) != usage:
            self._last[folder_id] = usage
            self._reporter.post(UsageMeasuredReport(report_id=new_report_id(), volume=volume.name,
                                                    folder_id=folder_id, observed_at=now_utc(),
                                                    bytes=usage[0], files=usage[1]))
        return usage

    async def measure_all(self, volume: PosixVolume) -> None:
        for entry in sorted((volume.root / "folders").iterdir()):
            with contextlib.suppress(VolumeError):
                await self.measure(volume, entry.name)

    async def run(self, volumes: list[PosixVolume], interval: float, stop: asyncio.Event) -> None:
        """Measures every folder every ``interval`` seconds until ``stop``."""
        while not stop.is_set():
            for volume in volumes:
                try:
                    await self.measure_all(volume)
                except OSError as exc:
                    log.warning("measuring volume %s failed: %s", volume.name, exc)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
