"""Measures folders' usage and reports it: after each change of a folder (always: the measure
settles the bytes of its uploads, which quotas count until then) and periodically (when it changed).

A folder whose measure fails, whatever the error, is logged (its id) and left at its last usage; the others
are measured all the same, and the periodic measure goes on (before, a ``RecursionError`` in one folder
1,000 directories deep ended the meter's task, and with it the service, at every start).

Measures walk in threads of their own (``MEASURES_AT_ONCE``), never in the pool the data plane's file reads,
opens, listings and uploads' last steps share: a walk lasts as long as the tree is large, and a kernel makes
trees of millions of files at no cost to its quota; a tenant touching a few such folders at once (one small
upload to each, again and again) held every thread of that pool, and every tenant's downloads and uploads waited
behind its walks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

from contracts.storage_reports import UsageMeasuredReport
from services.storage.reporting import Reporter, new_report_id, now_utc
from services.storage.volume import PosixVolume, VolumeError

__all__ = ["UsageMeter"]

log = logging.getLogger(__name__)


MEASURES_AT_ONCE = 2
"""Folders measured at once (the others wait for a thread of the meter, not for one of the data plane)."""
DEBOUNCE = 1.0
"""Seconds a measure after a change waits, so that a burst of changes to one folder (10,000 small
uploads) costs one walk of it, not one per change."""


class UsageMeter:
    """Last reported (bytes, files) per folder; a report only when a measure differs."""

    def __init__(self, reporter: Reporter, debounce: float = DEBOUNCE) -> None:
        self._reporter = reporter
        self._last: dict[str, tuple[int, int]] = {}
        self._pending: dict[str, asyncio.Task[object]] = {}
        self._debounce = debounce
        self._walkers = ThreadPoolExecutor(MEASURES_AT_ONCE, thread_name_prefix="usage")

    def touch(self, volume: PosixVolume, folder_id: str) -> None:
        """Measures the folder ``DEBOUNCE`` seconds from now, unless a measure is already due."""
        if folder_id not in self._pending:
            self._pending[folder_id] = asyncio.get_running_loop().create_task(self._later(volume, folder_id))

    async def _later(self, volume: PosixVolume, folder_id: str) -> None:
        try:
            await asyncio.sleep(self._debounce)
        finally:
            self._pending.pop(folder_id, None)
        await self.measure(volume, folder_id, changed=True)

    async def settle(self) -> None:
        """Waits for the measures that are due."""
        while self._pending:
            await asyncio.gather(*list(self._pending.values()), return_exceptions=True)

    def usage_of(self, folder_id: str) -> tuple[int, int] | None:
        return self._last.get(folder_id)

    def forget(self, folder_id: str) -> None:
        self._last.pop(folder_id, None)

    async def measure(self, volume: PosixVolume, folder_id: str, *, changed: bool = False) -> tuple[int, int] | None:
        """Measures one folder (in a thread) and posts a ``usage_measured`` report if the usage differs
        from the last one reported or the folder ``changed`` (its uploads are then settled); returns None
        when the folder is gone or its measure failed (logged: never raised, it stops no other folder)."""
        try:
            usage = await asyncio.get_running_loop().run_in_executor(self._walkers, volume.usage, folder_id)
        except VolumeError:
            self._last.pop(folder_id, None)
            return None
        except Exception:  # noqa: BLE001 - one folder's failure (an OSError, a bug) is logged, not spread
            log.exception("measuring folder %s on volume %s failed", folder_id, volume.name)
            return None
        if changed or self._last.get(folder_id) != usage:
            self._last[folder_id] = usage
            self._reporter.post(UsageMeasuredReport(report_id=new_report_id(), volume=volume.name,
                                                    folder_id=folder_id, observed_at=now_utc(),
                                                    bytes=usage[0], files=usage[1]))
        return usage

    async def measure_all(self, volume: PosixVolume) -> None:
        """Measures every folder of ``volume``, one after the other (one that fails is logged, not the end)."""
        for entry in sorted((volume.root / "folders").iterdir()):
            await self.measure(volume, entry.name)

    async def run(self, volumes: list[PosixVolume], interval: float, stop: asyncio.Event) -> None:
        """Measures every folder every ``interval`` seconds until ``stop``; a round that fails, whatever the
        error, is logged and the next one comes all the same (the service ends when this task does)."""
        while not stop.is_set():
            for volume in volumes:
                try:
                    await self.measure_all(volume)
                except Exception:  # noqa: BLE001 - the folders' directory unreadable, say: the next round retries
                    log.exception("measuring the folders of volume %s failed", volume.name)
            with contextlib.suppress(asyncio.TimeoutError):
                async with asyncio.timeout(interval):
                    await stop.wait()
