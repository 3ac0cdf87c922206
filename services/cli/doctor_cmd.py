"""``berth doctor``: checks that the read models agree (quota usage, agent occupancy), that the
relay is not stuck, and that nothing is left behind (dead letters, lag, stuck sessions)."""

from __future__ import annotations

from typing import Any

import click

from services.cli.connection import connect_client
from services.cli.running import run_async
from services.cli.output import Output

__all__ = ["DOCTOR", "doctor"]

DOCTOR = """
query { doctor { clean position deadLetters relayLag projectorLag
                checks { name subjects drifts } drifts { kind subject expected actual } } }
"""

CHECK_COLUMNS = [("name", "CHECK"), ("subjects", "SUBJECTS"), ("drifts", "DRIFTS")]
DRIFT_COLUMNS = [("kind", "KIND"), ("subject", "SUBJECT"), ("expected", "EXPECTED"), ("actual", "ACTUAL")]


@run_async
async def _run_checks() -> dict[str, Any]:
    return (await connect_client().execute(DOCTOR, {}))["doctor"]


@click.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Check that the read models agree and that nothing is left behind.

    \b
    quota         each keypair / project / domain holds exactly the sessions that
                  occupy resources, and the sum of their requested slots
    agents        each agent's occupied slots are those of its kernels still alive
    relay         the relay is not stuck at an event NATS refused ("relay stuck at
                  notification N: reason"); the read models are checked up to it
    dead-letters  no consumer has dead letters (see berth dlq ls)
    lag           the relay published, and the projector applied, every event
                  recorded when the check started, within the gateway's read wait
    stuck         no session stays SCHEDULED / PREPARING / CREATING / TERMINATING
                  beyond that status's deadline (BERTH_STUCK_<STATUS>_TIMEOUT)

    Exits with status 0 when everything agrees, 1 when a drift is found (superadmins only).
    """
    out: Output = ctx.obj
    report = _run_checks()
    if out.is_json:
        out.json(report)
    else:
        out.table(report["checks"], CHECK_COLUMNS, title="checks")
        if report["drifts"]:
            out.table(report["drifts"], DRIFT_COLUMNS, title="drifts")
        where = (f"read models at event position {report['position']}; {report['deadLetters']} dead letter(s), "
                 f"relay lag {report['relayLag']}, projector lag {report['projectorLag']}")
        verdict = ("clean", "green") if report["clean"] else (f"{len(report['drifts'])} drift(s)", "red")
        out.line(verdict, f": {where}")
    if not report["clean"]:
        ctx.exit(1)
