"""Query ``doctor`` (superadmins only: it reads every domain's sessions, keypairs and agents): do the
read models agree with each other, and is anything left behind (dead letters, a lagging relay or
projector, stuck sessions)?

It waits (at most the gateway's read wait) until the read models reflect every event recorded so far, reads the
``sessions``, ``kernels``, ``agents`` and ``quota_usage`` tables in one snapshot
(``projections.queries.health``), and
runs the checks of ``services.gateway.health.drift``. A drift that a transaction half
applied could explain (the projector between two batches) would be gone a moment
later, so a drift is reported only when a second snapshot, taken after the read
models caught up again, still shows it.

While the relay is stuck at an event NATS refused (``berth_relay_stuck``), nothing
after it can reach the read models: the checks then run at the position before that
event, and the relay check names it.

The operational checks (``services.gateway.health.operations``) read the dead-letter counts
per consumer and the last position published to ``EVENTS`` from JetStream, the read models'
position from PostgreSQL, and the stuck-session deadlines from the gateway's settings
(``BERTH_STUCK_<STATUS>_TIMEOUT``, the same as the controller's). Read models that do not catch
up within the wait are reported as lag, not as an error.
"""

from __future__ import annotations

from typing import Any

import strawberry
from nats.js.errors import NotFoundError
from psycopg_pool import AsyncConnectionPool
from strawberry.scalars import JSON

from contracts.envelope import utc_now
from contracts.subjects import DEADLETTER_STREAM, DEADLETTER_SUBJECTS
from projections.queries import health
from services.common.event_stream import read_cursor
from services.gateway.health import drift as doctor
from services.gateway.health import operations
from services.common.relay_status import RelayStuck, read_stuck
from services.gateway import readmodels as rm
from services.gateway.context import Info, caller
from services.gateway.errors import FORBIDDEN, READ_MODEL_BEHIND, GatewayError
from services.gateway.resources import Resources

__all__ = ["DoctorQuery", "DoctorReport", "read_snapshot", "relay_stuck"]


@strawberry.type(description="One disagreement between read models.")
class Drift:
    kind: str = strawberry.field(
        description="quota-sessions, quota-slots (a quota scope), agent-kernels, agent-occupied (an agent), "
                    "relay-stuck (an event the relay cannot publish), dead-letters (a consumer's dead letters), "
                    "relay-lag, projector-lag, session-stuck (a session in a transitional status past its deadline).")
    subject: str = strawberry.field(
        description="keypair/<access key>, project/<name>, domain/<name>, agent/<id>, notification/<id>, "
                    "consumer/<durable>, stream/EVENTS, read-models or session/<id>.")
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
    dead_letters: int = strawberry.field(description="Messages in the dead-letter stream, all consumers together.")
    relay_lag: int = strawberry.field(description="Events recorded but not published to EVENTS when checked.")
    projector_lag: int = strawberry.field(description="Events published but not applied to the read models when checked.")


async def read_snapshot(pool: AsyncConnectionPool) -> dict[str, list[dict[str, Any]]]:
    """Returns the rows the checks need, read in one repeatable-read transaction
    (``projections.queries.health.read_snapshot``)."""
    snapshot = await rm.read(health.read_snapshot, pool, [status.value for status in doctor.HOLDING])
    return {"sessions": snapshot.sessions, "kernels": snapshot.kernels, "agents": snapshot.agents,
            "quotas": snapshot.quotas}


async def dead_letter_counts(resources: Resources) -> dict[str, int]:
    """Returns how many messages each dead-letter subject (``dlq.<consumer>``, ``dlq.<consumer>.<agent id>``) holds."""
    js = await resources.jetstream()
    try:
        info = await js.stream_info(DEADLETTER_STREAM, subjects_filter=DEADLETTER_SUBJECTS[0])
    except NotFoundError:  # no service created the streams yet
        return {}
    return dict(info.state.subjects or {})


async def _positions(resources: Resources, store: int) -> operations.Positions:
    try:
        published = (await read_cursor(await resources.jetstream())).position
    except NotFoundError:  # no service created the streams yet: nothing was published
        published = 0
    return operations.Positions(store=store, stream=published, read_models=await rm.read_position(resources.pool))


async def relay_stuck(pool: AsyncConnectionPool) -> RelayStuck | None:
    """Returns where the relay is stuck, None when it is not."""
    async with pool.connection() as conn:
        return await read_stuck(conn)


class _Diagnosis:
    """One pass of every check, with the figures shown beside them."""

    def __init__(self, position: int, report: doctor.DoctorReport, dead_letters: int,
                 positions: operations.Positions) -> None:
        self.position = position
        self.report = report
        self.dead_letters = dead_letters
        self.positions = positions


async def _diagnose(info: Info) -> _Diagnosis:
    resources = info.context.resources
    stuck = await relay_stuck(resources.pool)
    position = await resources.call(resources.sessions.position)
    if stuck is not None:  # nothing after the stuck event reaches the read models
        position = min(position, stuck.notification_id - 1)
    try:
        await rm.wait_for_position(resources, position)
    except GatewayError as exc:
        if exc.code != READ_MODEL_BEHIND:
            raise  # behind: reported by the lag check
    rows = await read_snapshot(resources.pool)
    report = doctor.diagnose(rows["sessions"], rows["kernels"], rows["agents"], rows["quotas"], stuck)
    counts = await dead_letter_counts(resources)
    positions = await _positions(resources, position)
    checks = [operations.check_dead_letters(counts), operations.check_lag(positions),
              operations.check_stuck(rows["sessions"], resources.settings.stuck_deadlines(), utc_now())]
    report = doctor.DoctorReport(checks=report.checks + [c for c, _ in checks],
                                 drifts=report.drifts + [d for _, drifts in checks for d in drifts])
    return _Diagnosis(position, report, sum(counts.values()), positions)


@strawberry.type
class DoctorQuery:
    @strawberry.field(description="Checks that quota usage and agent occupancy agree with the sessions and kernels, "
                                  "that the relay is not stuck, that no consumer has dead letters, that the relay and "
                                  "the projector keep up and that no session is stuck in a transitional status "
                                  "(superadmins only: it covers every domain). Waits until the read models reflect "
                                  "every recorded event (every one before the event the relay is stuck at), at most "
                                  "the gateway's read wait.")
    async def doctor(self, info: Info) -> DoctorReport:
        principal = caller(info)
        if not principal.is_superadmin:  # a domain admin would read other domains' access keys and sessions
            raise GatewayError(FORBIDDEN, "doctor is for superadmins")
        found = await _diagnose(info)
        report = found.report
        if not report.clean:
            found = await _diagnose(info)
            report = doctor.persistent(report, found.report, {**doctor.CHECK_KINDS, **operations.OPERATION_KINDS})
        return DoctorReport(
            clean=report.clean,
            position=found.position,
            checks=[DoctorCheck(name=c.name, subjects=c.subjects, drifts=c.drifts) for c in report.checks],
            drifts=[Drift(kind=d.kind, subject=d.subject, expected=d.expected, actual=d.actual) for d in report.drifts],
            dead_letters=found.dead_letters,
            relay_lag=found.positions.relay_lag,
            projector_lag=found.positions.projector_lag,
        )
