"""``doctor`` through GraphQL and ``berth doctor`` on a real pipeline: events recorded through
the use cases → relay → projector → read models → gateway. A consistent system is clean;
a read model tampered with shows the drift, and the CLI exits with status 1."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from contracts import commands as c
from contracts.quota import quota_id
from contracts.session import KernelPlacement, KernelSpec, SessionSpec
from domain import agent as agent_domain
from domain import quota as quota_domain
from domain import session as session_domain
from services.sdk.client import BerthAPIError, BerthClient
from services.application.context import make_context
from services.application.sessions import Sessions
from services.common.settings import Settings
from services.projector.main import run_projector
from services.relay.main import run_relay
from tests.support.gateway import Keys, clean_streams, keys, read_models, served  # noqa: F401 - fixtures
from tests.support.publish import ServiceTasks, service_tasks

ROOT = Path(__file__).resolve().parents[2]
AGENT = "a1"
GIB = Decimal(1024**3)
DOCTOR = ("query { doctor { clean position deadLetters relayLag projectorLag checks { name subjects drifts } "
          "drifts { kind subject expected actual } } }")


@pytest.fixture
def sessions(pg_dsn: str) -> Iterator[Sessions]:
    app = Sessions(pg_dsn)
    yield app
    app.close()


@pytest.fixture
async def pipeline(served: str, nats_url: str, pg_dsn: str) -> AsyncIterator[ServiceTasks]:
    settings = Settings(nats_url=nats_url, pg_dsn=pg_dsn)
    async with service_tasks() as tasks:
        tasks.start("relay", lambda stop: run_relay(settings, stop))
        tasks.start("projector", lambda stop: run_projector(settings, stop))
        yield tasks


@pytest.fixture
async def admin(served: str, keys: Keys) -> AsyncIterator[BerthClient]:
    async with BerthClient(served, *keys.admin) as client:
        yield client


def populate(sessions: Sessions, owner: str) -> list[str]:
    """Records an agent and three sessions of ``owner``: one running, one ended, one pending."""
    ctx = make_context("test")
    sessions.record(agent_domain.decide(None, c.RegisterAgent(capacity={"cpu": Decimal(8), "mem": 8 * GIB},
                                                              backend="simulated", hostname=AGENT), ctx, AGENT))
    ids = []
    for _ in range(3):
        session_id = uuid.uuid4().hex[:12]
        kernels = [KernelSpec(kernel_id=f"{session_id}-k", slots={"cpu": Decimal(1), "mem": GIB})]
        sessions.request(session_id, c.RequestSession(owner=owner, spec=SessionSpec(
            name="s", image="python:3.11", kernels=kernels,
        )), ctx)
        ids.append(session_id)
    for session_id in ids[:2]:
        place(sessions, session_id)
        sessions.report(session_id, c.MarkKernelStarted(kernel_id=f"{session_id}-k", container_id="c"), ctx)
    sessions.terminate(ids[1], ctx)
    sessions.report(ids[1], c.MarkKernelExited(kernel_id=f"{ids[1]}-k", exit_code=0), ctx)
    return ids


def place(sessions: Sessions, session_id: str) -> None:
    """Schedules, assigns and consumes quota in one transaction, as the scheduler does."""
    ctx = make_context("scheduler")
    state = sessions.get(session_id)
    assert state is not None
    (kernel,) = state.kernels
    events = session_domain.decide(state, c.ScheduleSession(
        placements=[KernelPlacement(kernel_id=kernel.kernel_id, agent_id=AGENT)]), ctx, session_id)
    events += agent_domain.decide(agent_domain.replay(sessions.load(AGENT)), c.AssignKernel(
        kernel_id=kernel.kernel_id, session_id=session_id, image=state.spec.image, slots=kernel.slots), ctx, AGENT)
    for scope, name in quota_domain.quota_scopes(state.owner, state.spec.project, state.spec.domain):
        qid = quota_id(scope, name)
        events += quota_domain.decide(quota_domain.replay(sessions.load(qid)),
                                      c.ConsumeQuota(allocations={session_id: dict(kernel.slots)}), ctx, qid)
    sessions.record(events)


async def berth_doctor(served: str, keypair: tuple[str, str]) -> tuple[int, str]:
    """Runs ``berth -o json doctor`` against the gateway; returns the exit status and stdout."""
    env = {**os.environ, "BERTH_ENDPOINT": served, "BERTH_ACCESS_KEY": keypair[0], "BERTH_SECRET_KEY": keypair[1]}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "-o", "json", "doctor", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


async def test_doctor_is_clean_then_reports_a_tampered_read_model(
    pipeline: ServiceTasks, admin: BerthClient, served: str, keys: Keys, sessions: Sessions, pg_dsn: str
) -> None:
    running, ended, pending = await asyncio.to_thread(populate, sessions, keys.alice[0])

    report = (await admin.execute(DOCTOR))["doctor"]
    assert report["position"] == await asyncio.to_thread(sessions.position), "the read models were awaited"
    assert report["clean"] is True and report["drifts"] == []
    assert report["checks"] == [{"name": "quota", "subjects": 3, "drifts": 0},
                                {"name": "agents", "subjects": 1, "drifts": 0},
                                {"name": "relay", "subjects": 1, "drifts": 0},
                                {"name": "dead-letters", "subjects": 0, "drifts": 0},
                                {"name": "lag", "subjects": 2, "drifts": 0},
                                {"name": "stuck", "subjects": 0, "drifts": 0}]
    assert (report["deadLetters"], report["relayLag"], report["projectorLag"]) == (0, 0, 0)
    status, output = await berth_doctor(served, keys.admin)
    assert status == 0, output
    assert json.loads(output)["clean"] is True

    with psycopg.connect(pg_dsn) as conn:  # a release the read model "lost", and a stale agent occupancy
        conn.execute("INSERT INTO quota_usage_sessions (quota_id, session_id, slots)"
                     " SELECT quota_id, %s, %s::jsonb FROM quota_usage WHERE scope = 'keypair'",
                     (ended, json.dumps({"cpu": "1", "mem": str(GIB)})))
        conn.execute("UPDATE agents SET occupied = '{\"cpu\": \"2\"}'::jsonb WHERE agent_id = %s", (AGENT,))

    report = (await admin.execute(DOCTOR))["doctor"]
    assert report["clean"] is False
    drifts = {(d["kind"], d["subject"]): (d["expected"], d["actual"]) for d in report["drifts"]}
    assert drifts == {
        ("quota-sessions", f"keypair/{keys.alice[0]}"): ([running], sorted([running, ended])),
        ("agent-occupied", f"agent/{AGENT}"): ({"cpu": "1", "mem": str(GIB)}, {"cpu": "2"}),
    }
    assert [(c["name"], c["drifts"]) for c in report["checks"]] == [
        ("quota", 1), ("agents", 1), ("relay", 0), ("dead-letters", 0), ("lag", 0), ("stuck", 0)]

    status, output = await berth_doctor(served, keys.admin)
    assert status == 1, output
    printed = json.loads(output)
    assert printed["clean"] is False and len(printed["drifts"]) == 2
    pipeline.check()


async def test_doctor_is_for_admins_only(pipeline: ServiceTasks, served: str, keys: Keys) -> None:
    async with BerthClient(served, *keys.alice) as alice:
        with pytest.raises(BerthAPIError) as refused:
            await alice.execute(DOCTOR)
    assert refused.value.code == "FORBIDDEN"
    status, output = await berth_doctor(served, keys.alice)
    assert status == 1 and "FORBIDDEN" in output
