"""Turns the storage service's reports into folder events, idempotently.

Each report (``contracts.storage_reports.StorageReport`` on ``rp.storage.<volume>.<type>``) is applied by
``services.application.vfolders.VFolders.apply_report`` with causation ``report:<report_id>``:
the same report delivered again (after JetStream's deduplication window, or redelivered after a
crash before its ack) records nothing, nor does a fact already true. A report that can never
apply (undecodable, sent for another volume than its subject's, about an unknown folder or a
folder of another volume, with a bad path) raises ``PermanentError`` (dead letters); any other
failure (the event store away) is retried by the consumer.
"""

from __future__ import annotations

import logging

from nats.aio.msg import Msg

from contracts.subjects import SubjectError, storage_report_volume
from contracts.storage_reports import AnyStorageReport, decode_storage_report
from domain.errors import DomainError
from services.application.context import make_context
from services.application.facade import Facade
from services.application.vfolders import VFolders, report_context_id
from services.common.flow import PermanentError

__all__ = ["StorageReportHandler", "storage_report_of"]

log = logging.getLogger(__name__)


def storage_report_of(msg: Msg) -> AnyStorageReport:
    """Returns the report a message carries; PermanentError when its subject is not a storage
    report subject or names another volume than the report (decode errors are dead-lettered too)."""
    report = decode_storage_report(msg.data)
    try:
        volume = storage_report_volume(msg.subject)
    except SubjectError as exc:
        raise PermanentError(str(exc)) from exc
    if volume != report.volume:
        raise PermanentError(f"a report about volume {report.volume!r} sent on {msg.subject}")
    return report


class StorageReportHandler:
    """Batch consumer handler: applies each report of a fetch, in order, on the store's threads."""

    def __init__(self, vfolders: VFolders, store: Facade) -> None:
        self._vfolders = vfolders
        self._store = store

    def apply(self, report: AnyStorageReport) -> int | None:
        """Records what ``report`` says (blocking); returns the position, None when nothing changed."""
        ctx = make_context(f"storage:{report.volume}", causation_id=report_context_id(report))
        try:
            return self._vfolders.apply_report(report, ctx)
        except DomainError as exc:
            raise PermanentError(f"{type(exc).__name__}: {exc}") from exc

    async def __call__(self, messages: list[Msg]) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = []
        for msg in messages:
            try:
                report = storage_report_of(msg)
                await self._store.call(self.apply, report)
            except Exception as exc:  # noqa: BLE001 - settled (retried or dead-lettered) by the consumer
                outcomes.append(exc)
            else:
                outcomes.append(None)
        return outcomes
