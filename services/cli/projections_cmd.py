"""``berth projections rebuild``."""

from __future__ import annotations

import os
import time
from typing import Callable

import click
import msgspec

from services.cli.running import run_async
from services.cli.output import Output, Waiting
from services.sdk.instance import read_instance
from services.common.settings import Settings, default_data_dir

__all__ = ["RebuildReport", "projections"]

REPORT_EVERY = 5.0
"""Seconds between two progress lines of a rebuild when stderr is not a terminal."""


@click.group()
def projections() -> None:
    """Manage the read models (PostgreSQL tables fed by the event stream)."""


@projections.command("rebuild")
@click.pass_obj
@run_async
async def rebuild(out: Output) -> None:
    """Drop every read model and rebuild it from the event history, up to the EVENTS stream's last
    message: read from the event store, or from the stream where it holds messages the store does not.

    Talks to NATS and PostgreSQL directly: BERTH_NATS_URL / BERTH_PG_DSN, or the
    instance that `berth up` runs.
    """
    from services.common.gc_tuning import tune_gc
    from services.projector.main import rebuild_read_models

    tune_gc()  # a bulk replay allocates as a service does
    settings = Settings.from_env()
    if not (settings.nats_url and settings.pg_dsn) and not os.environ.get("BERTH_ENDPOINT"):
        instance = read_instance(default_data_dir())
        settings = msgspec.structs.replace(settings, nats_url=instance.nats_url, pg_dsn=instance.pg_dsn,
                                           nats_creds=instance.nats_creds or settings.nats_creds)
    out.info("rebuilding read models from the event store (the EVENTS stream where it holds other messages)…")
    with out.waiting("rebuilding: dropping and recreating the tables") as waiting:
        report = RebuildReport(out, waiting)
        position = await rebuild_read_models(settings, progress=report)
    seconds = max(time.monotonic() - report.started, 1e-3)
    out.info(f"done: read models at event position {position.position} (stream sequence {position.stream_seq}): "
             f"{position.stream_seq:,} events in {seconds:.1f} s ({position.stream_seq / seconds:,.0f} events/s)")


class RebuildReport:
    """Tells how far a rebuild got, after each batch: beside the spinner on a terminal, else as a
    line on stderr at most every ``REPORT_EVERY`` seconds (a long rebuild's log shows it moving)."""

    def __init__(self, out: Output, waiting: Waiting, clock: Callable[[], float] = time.monotonic) -> None:
        self._out = out
        self._waiting = waiting
        self._clock = clock
        self.started = self._last = clock()

    def __call__(self, applied: int, target: int) -> None:
        now = self._clock()
        rate = applied / max(now - self.started, 1e-3)
        text = f"rebuilt {applied:,} of {target:,} events ({applied * 100 // max(target, 1)} %), {rate:,.0f} events/s"
        self._waiting.update(text)
        if not self._out.err_terminal and now - self._last >= REPORT_EVERY:
            self._out.info(text)
            self._last = now
