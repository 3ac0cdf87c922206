"""Query ``doctor`` (superadmins only: it reads every domain's sessions, keypairs and agents): do the read
models agree with each other?

It waits until the read models reflect every event recorded so far, reads the
``sessions``, ``kernels``, ``agents`` and ``quota_usage`` tables in one snapshot
(``projections.queries.health``), and
runs the checks of ``services.gateway.health.drift``. A drift that a transaction half
applied could explain (the projector between two batches) would be gone a moment
later, so a drift is reported only when a second snapshot, taken after the read
models caught up again, still shows it.

While the relay is stuck at an event NATS refused (``berth_relay_stuck``), nothing
after it can reach the read models: the checks then run at the position before that
event, and the relay check names it.
"""

from __future__ import annotations

from typing import Any

import strawberry
from psycopg_pool import AsyncConnectionPool
from strawberry.scalars import JSON

from projections.queries import health
from services.gateway.health import drift as doctor
from services.common.relay_status import RelayStuck, read_stuck
from services.gateway import readmodels as rm
from services.gateway.context import Info, caller
from services.gateway.errors import FORBIDDEN, GatewayError

__all__ = ["DoctorQuery", "DoctorReport", "read_snapshot", "relay_stuck"]


@strawberry.type(description="One disagreement between read models.")
class Drift:
    kind: str = strawberry.field(
        description="quota-sessions, quota-slots (a quota scope), agent-kernels, agent-occupied (an agent), "
                    "relay-stuck (an event the relay cannot publish).")
    subject: str = strawberry.field(
        description="keypair/<access key>, project/<name>, domain/<name>, agent/<id> or notification/<id>.")
    expected: JSON = strawberry.field(description="What the other read models imply (session or kernel ids, or slots).")
    actual: JSON


@strawberry.type(description="One check: how many subjects it compared and how many drifts it found.")
class DoctorCheck:
    name: str
    subjects: int
    drifts: int


@strawberry.type(description="The outcome of the consistency checks.")
class DoctorReport:
    clean: bool
    position: int = strawberry.field(description="The event-store position the read models were checked at.")
    checks: list[DoctorCheck]
    drifts: list[Drift]


async def read_snapshot(pool: AsyncConnectionPool) -> dict[str, list[dict[str, Any]]]:
    """Returns the rows the checks need, read in one repeatable-read transaction
    (``projections.queries.health.read_snapshot``)."""
    snapshot = await rm.read(health.read_snapshot, pool, [status.value for status in doctor.HOLDING])
    return {"sessions": snapshot.sessions, "kernels": snapshot.kernels, "agents": snapshot.agents,
            "quotas": snapshot.quotas}


async def relay_stuck(pool: AsyncConnectionPool) -> RelayStuck | None:
    """Returns where the relay is stuck, None when it is not."""
    async with pool.connection() as conn:
        return await read_stuck(conn)


async def _diagnose(info: Info) -> tuple[int, doctor.DoctorReport]:
    resources = info.context.resources
    stuck = await relay_stuck(resources.pool)
    position = await resources.call(resources.sessions.position)
    if stuck is not None:  # nothing after the stuck event reaches the read models
        position = min(position, stuck.notification_id - 1)
    await rm.wait_for_position(resources, position)
    rows = await read_snapshot(resources.pool)
    return position, doctor.diagnose(rows["sessions"], rows["kernels"], rows["agents"], rows["quotas"], stuck)


@strawberry.type
class DoctorQuery:
    @strawberry.field(description="Checks that quota usage and agent occupancy agree with the sessions and kernels, "
                                  "and that the relay is not stuck (superadmins only: it covers every domain). Waits "
                                  "until the read models reflect every recorded event (every one before the event the "
                                  "relay is stuck at).")
    async def doctor(self, info: Info) -> DoctorReport:
        principal = caller(info)
        if not principal.is_superadmin:  # a domain admin would read other domains' access keys and sessions
            raise GatewayError(FORBIDDEN, "doctor is for superadmins")
        position, report = await _diagnose(info)
        if not report.clean:
            position, again = await _diagnose(info)
            report = doctor.persistent(report, again)
        return DoctorReport(
            clean=report.clean,
            position=position,
            checks=[DoctorCheck(name=c.name, subjects=c.subjects, drifts=c.drifts) for c in report.checks],
            drifts=[Drift(kind=d.kind, subject=d.subject, expected=d.expected, actual=d.actual) for d in report.drifts],
        )
