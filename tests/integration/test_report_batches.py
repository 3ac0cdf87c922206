"""The controller's batched report processing, on PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal


from contracts import commands as c
from contracts.quota import quota_id
from contracts.reports import KernelExitedReport, KernelRunningReport
from contracts.session import KernelPlacement, KernelSpec, SessionSpec
from contracts.status import SessionStatus
from domain import agent as agent_domain
from domain import quota as quota_domain
from domain import session as session_domain
from services.application.agents import Agents
from services.common.flow import PermanentError
from services.common.store import ConcurrencyError
from services.application.context import make_context
from services.application.sessions import Sessions
from services.controller.reports import ReportProcessor
from tests.support.read_counting import CountsReads

NOW = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
GIB = Decimal(1024**3)


def placed(sessions: Sessions, agents: Agents, session_id: str, agent_id: str = "a1") -> str:
    """Records a session scheduled on ``agent_id``; returns its kernel id."""
    ctx, kernel_id = make_context("test"), f"{session_id}-k0"
    if agents.get(agent_id) is None:
        agents.handle(agent_id, c.RegisterAgent(capacity={"cpu": Decimal(8), "mem": 8 * GIB}, backend="sim", hostname="h"), ctx)
    sessions.request(session_id, c.RequestSession(
        owner="AK", spec=SessionSpec(
            name=session_id, image="i",
            kernels=[KernelSpec(kernel_id=kernel_id, slots={"cpu": Decimal(1), "mem": GIB})],
        )), ctx)
    schedule = c.ScheduleSession(placements=[KernelPlacement(kernel_id=kernel_id, agent_id=agent_id)])
    events = session_domain.decide(sessions.get(session_id), schedule, ctx, session_id)
    events += agent_domain.decide(agents.get(agent_id), c.AssignKernel(
        kernel_id=kernel_id, session_id=session_id, image="i", slots={"cpu": Decimal(1), "mem": GIB}), ctx, agent_id)
    sessions.record(events)
    return kernel_id


def running(session_id: str, kernel_id: str, agent_id: str = "a1") -> tuple[str, KernelRunningReport, str]:
    report = KernelRunningReport(agent_id=agent_id, observed_at=NOW, kernel_id=kernel_id, session_id=session_id,
                                 container_id=f"c-{kernel_id}")
    return agent_id, report, f"{agent_id}:{kernel_id}:running"


def test_progress_reports_of_one_fetch_are_recorded_in_one_transaction(apps: tuple[Sessions, Agents]) -> None:
    sessions, agents = apps
    kernels = {sid: placed(sessions, agents, sid) for sid in ("s1", "s2", "s3")}
    saves: list[int] = []
    record = sessions.record
    sessions.record = lambda events: saves.append(len(events)) or record(events)  # type: ignore[method-assign]

    outcomes = ReportProcessor(sessions, agents).process_batch([running(sid, k) for sid, k in kernels.items()])

    assert outcomes == [None, None, None]
    assert saves == [6], "3 kernel_started + 3 status_changed(RUNNING) in one save"
    assert all(sessions.get(sid).status is SessionStatus.RUNNING for sid in kernels)  # type: ignore[union-attr]


def test_a_bad_report_in_a_batch_is_refused_alone(apps: tuple[Sessions, Agents]) -> None:
    sessions, agents = apps
    good = placed(sessions, agents, "good")
    other = placed(sessions, agents, "other", agent_id="a2")
    stranger = running("other", other, agent_id="a1")  # a1 reports a kernel of a2
    unknown = running("nobody", "nobody-k0")
    impostor = ("a1", running("good", good, agent_id="a2")[1], "x")  # sent by a1 as a2

    outcomes = ReportProcessor(sessions, agents).process_batch([stranger, running("good", good), unknown, impostor])

    assert outcomes[1] is None
    assert [type(o) for o in (outcomes[0], outcomes[2], outcomes[3])] == [PermanentError] * 3
    assert "not assigned to agent a1" in str(outcomes[0]) and "not found" in str(outcomes[2])
    assert sessions.get("good").status is SessionStatus.RUNNING  # type: ignore[union-attr]
    assert sessions.get("other").status is SessionStatus.SCHEDULED, "the refused report changed nothing"  # type: ignore[union-attr]


def test_an_exit_after_progress_in_the_same_batch_keeps_the_order(apps: tuple[Sessions, Agents]) -> None:
    sessions, agents = apps
    kernel = placed(sessions, agents, "s1")
    exited = KernelExitedReport(agent_id="a1", observed_at=NOW, kernel_id=kernel, session_id="s1", exit_code=0)

    outcomes = ReportProcessor(sessions, agents).process_batch([running("s1", kernel), ("a1", exited, "e")])

    assert outcomes == [None, None]
    state = sessions.get("s1")
    assert state is not None and state.status is SessionStatus.TERMINATED
    assert agents.get("a1").allocations == {}  # type: ignore[union-attr]
    assert [k.status.value for k in state.kernels] == ["TERMINATED"]


def test_the_same_batch_applied_twice_changes_nothing_the_second_time(apps: tuple[Sessions, Agents]) -> None:
    sessions, agents = apps
    kernel = placed(sessions, agents, "s1")
    processor = ReportProcessor(sessions, agents)
    assert processor.process_batch([running("s1", kernel)]) == [None]
    before = sessions.position()
    assert processor.process_batch([running("s1", kernel)]) == [None]
    assert sessions.position() == before


def _holding(sessions: Sessions, session_ids: list[str]) -> None:
    """Records the quota each session holds in its owner's scopes, as a scheduling pass does."""
    ctx, events = make_context("test"), []
    state = sessions.get(session_ids[0])
    assert state is not None
    for scope, name in quota_domain.quota_scopes(state.owner, state.spec.project, state.spec.domain):
        qid = quota_id(scope, name)
        last = sessions.last_event(qid)
        holding = quota_domain.replay(sessions.load(qid)) if last is not None else None
        events += quota_domain.decide(holding, c.ConsumeQuota(
            allocations={sid: {"cpu": Decimal(1), "mem": GIB} for sid in session_ids}), ctx, qid)
    sessions.record(events)


def exited(session_id: str, kernel_id: str, agent_id: str = "a1") -> tuple[str, KernelExitedReport, str]:
    report = KernelExitedReport(agent_id=agent_id, observed_at=NOW, kernel_id=kernel_id, session_id=session_id,
                                exit_code=0)
    return agent_id, report, f"{agent_id}:{kernel_id}:exited"


def test_exits_of_one_fetch_are_recorded_in_one_transaction(apps: tuple[Sessions, Agents]) -> None:
    """Sessions on one agent, holding quota in the same scopes: each exit builds on the ones before it."""
    sessions, agents = apps
    kernels = {sid: placed(sessions, agents, sid) for sid in ("s1", "s2", "s3")}
    _holding(sessions, list(kernels))
    processor = ReportProcessor(sessions, agents)
    assert processor.process_batch([running(sid, k) for sid, k in kernels.items()]) == [None] * 3
    saves: list[int] = []
    record = sessions.record
    sessions.record = lambda events: saves.append(len(events)) or record(events)  # type: ignore[method-assign]

    outcomes = processor.process_batch([exited(sid, k) for sid, k in kernels.items()])

    assert outcomes == [None, None, None]
    assert saves == [3 * (2 + 1 + 3)], "per exit: kernel_exited, status_changed, kernel_released, 3 quota_released"
    assert all(sessions.get(sid).status is SessionStatus.TERMINATED for sid in kernels)  # type: ignore[union-attr]
    assert agents.get("a1").allocations == {}  # type: ignore[union-attr]
    state = sessions.get("s1")
    assert state is not None
    for scope, name in quota_domain.quota_scopes(state.owner, state.spec.project, state.spec.domain):
        quota = quota_domain.replay(sessions.load(quota_id(scope, name)))
        assert quota is not None and quota.holding == {} and quota.version == 4


def test_a_refused_exit_in_a_batch_leaves_the_others(apps: tuple[Sessions, Agents]) -> None:
    sessions, agents = apps
    kernels = {sid: placed(sessions, agents, sid) for sid in ("s1", "s2")}
    _holding(sessions, list(kernels))
    impostor = exited("s1", kernels["s1"], agent_id="a2")  # a2 reports a kernel of a1

    outcomes = ReportProcessor(sessions, agents).process_batch(
        [impostor, exited("s2", kernels["s2"]), exited("nobody", "nobody-k0")])

    assert outcomes[1] is None and [type(o) for o in (outcomes[0], outcomes[2])] == [PermanentError] * 2
    assert sessions.get("s1").status is SessionStatus.SCHEDULED  # type: ignore[union-attr]
    assert sessions.get("s2").status is SessionStatus.TERMINATED  # type: ignore[union-attr]
    assert set(agents.get("a1").allocations) == {kernels["s1"]}  # type: ignore[union-attr]


def test_terminations_of_sessions_on_one_agent_are_recorded_in_one_transaction(apps: tuple[Sessions, Agents]) -> None:
    """The gateway's group commit of ``terminateSession``: each decided on the agent the earlier ones left."""
    sessions, agents = apps
    kernels = {sid: placed(sessions, agents, sid) for sid in ("s1", "s2", "s3")}
    assert ReportProcessor(sessions, agents).process_batch([running(sid, k) for sid, k in kernels.items()]) == [None] * 3
    saves: list[int] = []
    record_groups = sessions.record_groups
    sessions.record_groups = lambda groups: saves.append(sum(map(len, groups))) or record_groups(groups)  # type: ignore[method-assign]
    ctx = make_context("AK")

    outcomes = sessions.terminate_many([("s1", ctx), ("nobody", ctx), ("s2", ctx), ("s3", ctx), ("s1", ctx)])

    assert saves == [6], "per session: status_changed(TERMINATING), kernel_termination_requested"
    assert isinstance(outcomes[1], Exception) and "not found" in str(outcomes[1])
    positions = [outcomes[i] for i in (0, 2, 3)]
    assert all(isinstance(p, int) for p in positions) and len(set(positions)) == 3, outcomes
    assert outcomes[4] == sessions.position(), "a second termination records nothing and answers the position"
    assert all(sessions.get(sid).status is SessionStatus.TERMINATING for sid in kernels)  # type: ignore[union-attr]
    agent = agents.get("a1")
    assert agent is not None and agent.version == 1 + 3 + 3, "registered, 3 assigned, 3 termination requests"


def test_terminations_whose_group_keeps_conflicting_run_alone(apps: tuple[Sessions, Agents]) -> None:
    sessions, agents = apps
    for sid in ("s1", "s2"):
        placed(sessions, agents, sid)

    def conflicting(groups: object) -> list[int | None]:
        raise ConcurrencyError("another writer moved the agent on")

    sessions.record_groups = conflicting  # type: ignore[method-assign]
    outcomes = sessions.terminate_many([("s1", make_context("AK")), ("s2", make_context("AK"))])

    assert all(isinstance(o, int) for o in outcomes), outcomes
    assert all(sessions.get(sid).status is SessionStatus.TERMINATING for sid in ("s1", "s2"))  # type: ignore[union-attr]


class CountingSessions(CountsReads, Sessions):
    """The session use cases, counting what they read from the store."""


def test_a_batch_reads_its_sessions_in_one_read(pg_dsn: str) -> None:
    """Progress, exits and terminations of many sessions: one store read for all of them, not one each
    (the controller read every session of a fetch on its own)."""
    sessions, agents = CountingSessions(pg_dsn), Agents(pg_dsn)
    try:
        kernels = {sid: placed(sessions, agents, sid) for sid in ("s1", "s2", "s3", "s4")}
        processor = ReportProcessor(sessions, agents)

        def session_reads() -> tuple[list[str], list[set[str]]]:
            alone = [aggregate for aggregate, _, _ in sessions.reads if aggregate in kernels]
            together = [ids & set(kernels) for ids in sessions.reads_together if ids & set(kernels)]
            sessions.reads.clear()
            sessions.reads_together.clear()
            return alone, together

        session_reads()
        assert processor.process_batch([running(sid, kernels[sid]) for sid in ("s1", "s2", "s3", "s4")]) == [None] * 4
        assert session_reads() == ([], [set(kernels)])

        ctx = make_context("AK")
        assert all(isinstance(p, int) for p in sessions.terminate_many([("s1", ctx), ("s2", ctx)]))
        assert session_reads() == ([], [{"s1", "s2"}])

        assert processor.process_batch([exited(sid, kernels[sid]) for sid in ("s1", "s2", "s3")]) == [None] * 3
        assert session_reads() == ([], [{"s1", "s2", "s3"}])
        assert [sessions.get(sid).status for sid in kernels] == [  # type: ignore[union-attr]
            SessionStatus.TERMINATED, SessionStatus.TERMINATED, SessionStatus.TERMINATED, SessionStatus.RUNNING]
    finally:
        sessions.close()
        agents.close()
