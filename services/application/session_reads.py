"""``Reads``: what the decisions of one save of ``services.application.sessions.Sessions`` read, kept
as the events decided so far leave it (a batch's facts build on each other)."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Protocol, Sequence

from contracts.envelope import Event
from contracts.quota import quota_id
from domain import agent as agent_domain
from domain import quota as quota_domain
from domain import session as session_domain
from domain.session import SessionState

__all__ = ["Reads", "SessionStore"]


class SessionStore(Protocol):
    """What ``Reads`` reads through (``Sessions``)."""

    def get(self, session_id: str) -> SessionState | None: ...

    def current(self, aggregate_id: str, evolve: Callable[[Any, Event], Any]) -> Any: ...

    def current_many(self, aggregate_ids: Iterable[str], evolve: Callable[[Any, Event], Any]) -> dict[str, Any]: ...

    def version_of(self, aggregate_id: str) -> int: ...

    def last_events(self, aggregate_ids: Sequence[str]) -> dict[str, Event | None]: ...


class Reads:
    """What the decisions of one save read (sessions, agents, quota scopes' versions): read from the
    store the first time, then as the events decided so far left them, so that facts decided together
    (a batch, or the several steps of one fact) build on each other; nothing is recorded here."""

    def __init__(self, sessions: SessionStore) -> None:
        self._app = sessions
        self._sessions: dict[str, SessionState | None] = {}
        self._agents: dict[str, agent_domain.AgentState | None] = {}
        self._versions: dict[str, int] = {}

    def read_sessions(self, session_ids: Iterable[str], *, quotas: bool = False) -> None:
        """Reads the sessions not read yet, all in one read (``current_many``), for a batch about to
        decide on them one by one; then what their facts may change (``_read_around``; the quota scopes'
        versions with ``quotas``: for facts that may end the sessions)."""
        ids = list(dict.fromkeys(session_ids))
        unread = [i for i in ids if i not in self._sessions]
        if unread:
            self._sessions |= self._app.current_many(unread, session_domain.evolve)
        self._read_around([self._sessions[i] for i in ids], quotas)

    def _read_around(self, states: Iterable[SessionState | None], quotas: bool) -> None:
        """Reads the agents of the live sessions' kernels in one read and, with ``quotas``, the versions of the
        quota scopes those that were placed hold in one more: a batch of exits or terminations read them one by
        one before (a round trip per agent and per scope, ~13 per batch of exits with 10 agents)."""
        agents: list[str] = []
        scopes: list[str] = []
        for state in states:
            if state is None or state.status.is_terminal:
                continue
            placed = [kernel.agent_id for kernel in state.kernels if kernel.agent_id is not None]
            agents += placed
            if placed and quotas:
                spec = state.spec
                scopes += [quota_id(scope, name) for scope, name in quota_domain.quota_scopes(state.owner, spec.project,
                                                                                               spec.domain)]
        unread = [i for i in dict.fromkeys(agents) if i not in self._agents]
        if unread:
            self._agents |= self._app.current_many(unread, agent_domain.evolve)
        unread = [i for i in dict.fromkeys(scopes) if i not in self._versions]
        if unread:
            self._versions |= {i: event.originator_version if event is not None else 0
                               for i, event in self._app.last_events(unread).items()}

    def session(self, session_id: str) -> SessionState | None:
        if session_id not in self._sessions:
            self._sessions[session_id] = self._app.get(session_id)
        return self._sessions[session_id]

    def agent(self, agent_id: str) -> agent_domain.AgentState | None:
        if agent_id not in self._agents:
            self._agents[agent_id] = self._app.current(agent_id, agent_domain.evolve)
        return self._agents[agent_id]

    def version(self, aggregate_id: str) -> int:
        """Returns the version of an aggregate (0 when it has no events), read in one indexed read."""
        if aggregate_id not in self._versions:
            self._versions[aggregate_id] = self._app.version_of(aggregate_id)
        return self._versions[aggregate_id]

    def decided(self, events: list[Event]) -> list[Event]:
        """Applies ``events`` (just decided) to what is read next; returns them."""
        for event in events:
            aggregate_id = event.originator_id
            if aggregate_id in self._sessions:
                self._sessions[aggregate_id] = session_domain.evolve(self._sessions[aggregate_id], event)
            elif aggregate_id in self._agents:
                self._agents[aggregate_id] = agent_domain.evolve(self._agents[aggregate_id], event)
            self._versions[aggregate_id] = event.originator_version
        return events

    def mark(self) -> tuple[dict[str, Any], ...]:
        """Returns what ``restore`` needs to forget the events decided after this call."""
        return dict(self._sessions), dict(self._agents), dict(self._versions)

    def restore(self, mark: tuple[dict[str, Any], ...]) -> None:
        self._sessions, self._agents, self._versions = (dict(m) for m in mark)  # type: ignore[assignment]
