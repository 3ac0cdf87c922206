"""``berth projections rebuild``."""

from __future__ import annotations

import os

import click
import msgspec

from services.cli.running import run_async
from services.cli.output import Output
from services.sdk.instance import read_instance
from services.common.settings import Settings, default_data_dir

__all__ = ["projections"]


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
    position = await rebuild_read_models(settings)
    out.info(f"done: read models at event position {position.position} (stream sequence {position.stream_seq})")
