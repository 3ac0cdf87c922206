"""A batch of kernel exits (or of terminations) reads the agents and quota scopes its facts change in one read
each, as it reads its sessions: it read each agent and each scope's version on its own, ~13 round trips per
controller batch with 10 agents (``services.application.session_reads.Reads``)."""

from __future__ import annotations

from typing import Any, Sequence

from contracts.envelope import Event
from contracts.status import SessionStatus
from services.application.agents import Agents
from services.application.context import make_context
from services.controller.reports import ReportProcessor
from tests.integration.test_report_batches import CountingSessions, exited, placed, running

AGENTS = ("a1", "a2", "a3")


class CountingNeighbours(CountingSessions):
    """Also counts the reads of an aggregate's version, alone and together."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.versions_alone: list[str] = []
        self.versions_together: list[set[str]] = []
        super().__init__(*args, **kwargs)

    def version_of(self, aggregate_id: str) -> int:
        self.versions_alone.append(aggregate_id)
        return super().version_of(aggregate_id)

    def last_events(self, aggregate_ids: Sequence[str]) -> dict[str, Event | None]:
        self.versions_together.append(set(aggregate_ids))
        return super().last_events(aggregate_ids)

    def clear(self) -> None:
        for seen in (self.reads, self.reads_together, self.versions_alone, self.versions_together):
            seen.clear()


def test_a_batch_reads_its_agents_and_quota_scopes_in_one_read_each(pg_dsn: str) -> None:
    sessions, agents = CountingNeighbours(pg_dsn), Agents(pg_dsn)
    try:
        kernels = {f"s{i}": (placed(sessions, agents, f"s{i}", AGENTS[i % 3]), AGENTS[i % 3]) for i in range(9)}
        processor = ReportProcessor(sessions, agents)
        assert processor.process_batch([running(s, k, a) for s, (k, a) in kernels.items()]) == [None] * 9
        assert processor.process_batch([exited(s, k, a) for s, (k, a) in list(kernels.items())[:3]]) == [None] * 3
        sessions.clear()  # the agents are cached now, as in a running controller

        assert processor.process_batch([exited(s, k, a) for s, (k, a) in list(kernels.items())[3:6]]) == [None] * 3
        assert [a for a, _, _ in sessions.reads if a in AGENTS] == [], "no agent read on its own"
        assert [ids & set(AGENTS) for ids in sessions.reads_together if ids & set(AGENTS)] == [set(AGENTS)]
        assert sessions.versions_alone == [] and len(sessions.versions_together) == 1, "the scopes' versions at once"
        sessions.clear()

        terminated = sessions.terminate_many([(s, make_context("AK")) for s in list(kernels)[6:]])
        assert all(isinstance(p, int) for p in terminated), terminated
        assert [a for a, _, _ in sessions.reads if a in AGENTS] == [] and sessions.versions_alone == []
        assert sessions.versions_together == [], "a termination that ends no session reads no quota scope"
        assert [sessions.get(s).status for s in kernels] == (  # type: ignore[union-attr]
            [SessionStatus.TERMINATED] * 6 + [SessionStatus.TERMINATING] * 3)
    finally:
        sessions.close()
        agents.close()
