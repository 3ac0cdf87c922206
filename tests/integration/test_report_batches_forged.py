"""One forged report no longer refuses the other reports of its fetch (the controller's batched report
processing, on PostgreSQL). An oversized string is refused when the report is decoded; a group save the store
refuses for another reason than a conflict or an outage (the travel guard's size limit, here by a report that
skipped decoding) is applied item by item, so only the bad item fails. Before, the whole fetch — up to 256
reports of every agent — failed together, five times, and was dead-lettered: healthy sessions never ran."""

from __future__ import annotations

from collections.abc import AsyncIterator

import eventsourcing.persistence as es
import msgspec
import pytest
from nats.aio.msg import Msg

from contracts import commands as c
from contracts.reports import KernelExitedReport, KernelRunningReport, encode_report
from contracts.status import Reason, SessionStatus
from contracts.subjects import report_subject
from contracts.travel import TravelError
from services.application.agents import Agents
from services.application.context import make_context
from services.application.facade import Facade
from services.application.sessions import Sessions
from services.common.flow import PermanentError
from services.controller.reports import ReportHandler, ReportProcessor
from tests.integration.test_report_batches import NOW, placed, running

HUGE = "x" * 300_000
"""A string that makes any event over ``contracts.travel.MAX_EVENT_BYTES``."""


def message(report: KernelRunningReport | KernelExitedReport, data: bytes | None = None) -> Msg:
    return Msg(_client=None, subject=report_subject(report.agent_id, report.type_name()),  # type: ignore[arg-type]
               data=encode_report(report) if data is None else data)


def forged_running(session_id: str, kernel_id: str) -> KernelRunningReport:
    return KernelRunningReport(agent_id="evil", observed_at=NOW, kernel_id=kernel_id, session_id=session_id,
                               container_id=HUGE)


@pytest.fixture
async def store() -> AsyncIterator[Facade]:
    facade = Facade("test-store", 2)
    yield facade
    await facade.close(wait=True)


async def test_a_forged_report_in_a_fetch_is_refused_at_decode_alone(apps: tuple[Sessions, Agents],
                                                                     store: Facade) -> None:
    sessions, agents = apps
    healthy = {sid: placed(sessions, agents, sid, "a1") for sid in ("h1", "h2")}
    target = placed(sessions, agents, "victim", "evil")
    fetch = [message(running("h1", healthy["h1"])[1]), message(forged_running("victim", target)),
             message(running("h2", healthy["h2"])[1])]

    outcomes = await ReportHandler(ReportProcessor(sessions, agents), store)(fetch)

    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], msgspec.ValidationError) and "length <= 256" in str(outcomes[1])
    assert all(sessions.get(sid).status is SessionStatus.RUNNING for sid in healthy)  # type: ignore[union-attr]


def test_a_progress_group_the_store_refuses_is_applied_item_by_item(apps: tuple[Sessions, Agents]) -> None:
    sessions, agents = apps
    healthy = {sid: placed(sessions, agents, sid, "a1") for sid in ("h1", "h2")}
    target = placed(sessions, agents, "victim", "evil")
    forged = ("evil", forged_running("victim", target), "e")  # not decoded: the save is the backstop

    outcomes = ReportProcessor(sessions, agents).process_batch(
        [running("h1", healthy["h1"]), forged, running("h2", healthy["h2"])])

    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], PermanentError) and "TravelError" in str(outcomes[1]), "dead-lettered at once"
    assert all(sessions.get(sid).status is SessionStatus.RUNNING for sid in healthy)  # type: ignore[union-attr]
    assert sessions.get("victim").status is not SessionStatus.RUNNING  # type: ignore[union-attr]


def test_an_exit_group_the_store_refuses_is_applied_item_by_item(apps: tuple[Sessions, Agents]) -> None:
    sessions, agents = apps
    kernels = {sid: placed(sessions, agents, sid, "a1") for sid in ("e1", "bad", "e2")}

    def exited(sid: str, detail: str | None = None) -> tuple[str, c.MarkKernelExited, object]:
        return sid, c.MarkKernelExited(kernel_id=kernels[sid], exit_code=1, reason=Reason.FAILED_TO_START,
                                       detail=detail), make_context("agent:a1")

    checked: list[int] = []
    outcomes = sessions.report_exits([exited("e1"), exited("bad", HUGE), exited("e2")],  # type: ignore[list-item]
                                     guard=lambda index, _: checked.append(index))

    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], TravelError)
    assert [sessions.get(sid).status for sid in kernels] == [  # type: ignore[union-attr]
        SessionStatus.ERROR, SessionStatus.SCHEDULED, SessionStatus.ERROR]
    assert sorted(set(checked)) == [0, 1, 2], "each item alone is still guarded, by its own index"


def test_an_outage_fails_the_group_whole(apps: tuple[Sessions, Agents], monkeypatch: pytest.MonkeyPatch) -> None:
    sessions, agents = apps
    kernels = {sid: placed(sessions, agents, sid, "a1") for sid in ("o1", "o2")}
    saves: list[int] = []

    def away(events: list[object]) -> None:
        saves.append(len(events))
        raise es.OperationalError("connection refused")

    monkeypatch.setattr(sessions, "record", away)
    with pytest.raises(es.OperationalError):  # retried in place by the consumer, every item together
        ReportProcessor(sessions, agents).process_batch([running(sid, k) for sid, k in kernels.items()])
    assert saves == [4], "one save of the group, none item by item"
