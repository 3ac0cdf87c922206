"""The outages the services are waiting out (``services.common.health_board``), for ``/healthz``:
one line per outage, naming the service process, the dependency, since when and the last error."""

from __future__ import annotations

from services.common.health_board import read_health
from services.common.transient import OUTAGES
from services.gateway.resources import Resources

__all__ = ["service_outages"]


async def service_outages(resources: Resources) -> list[str]:
    """Returns this process's outages and those every service process put in the health bucket;
    one line saying so when NATS cannot be read."""
    lines = [f"gateway: {line}" for line in OUTAGES.describe()]
    try:
        health = await read_health((await resources.nats()).jetstream())
    except Exception as exc:  # noqa: BLE001 - NATS away: that is the news
        return [*lines, f"gateway: cannot read the services' health from NATS ({type(exc).__name__}: {exc})"]
    return [*lines, *(f"{h.service} (pid {h.pid}): {line}" for h in health for line in h.outages)]
