"""Use cases of the session context: request, terminate, and kernel lifecycle facts."""

from __future__ import annotations

from contracts import commands as c
from contracts.envelope import Event
from contracts.status import Reason, SessionStatus
from domain import agent as agent_domain
from domain import session as session_domain
from domain.emitting import Context
from domain.session import SessionState
from services.common.store import BerthApplication, retry_on_conflict

__all__ = ["Sessions"]

_KERNEL_FACTS = (c.MarkKernelPreparing, c.MarkKernelCreating, c.MarkKernelStarted, c.MarkKernelExited)


class Sessions(BerthApplication):
    """Loads sessions, decides, and saves the outcome with the agents it touches, atomically."""

    def get(self, session_id: str) -> SessionState | None:
        """Returns the current state of a session, None when unknown."""
        return session_domain.replay(self.load(session_id))

    def request(self, session_id: str, command: c.RequestSession, ctx: Context) -> int:
        """Records a new session; returns the position of its ``session.requested`` event."""
        events = session_domain.decide(self.get(session_id), command, ctx, session_id)
        position = self.record(events)
        assert position is not None
        return position

    def terminate(self, session_id: str, ctx: Context, reason: Reason = Reason.USER_REQUESTED) -> int | None:
        """Cancels a pending session or starts terminating its kernels; returns the position."""

        def attempt() -> int | None:
            state = self.get(session_id)
            events = session_domain.decide(state, c.TerminateSession(reason=reason), ctx, session_id)
            if state is not None and events and events[-1].status is SessionStatus.TERMINATING:  # type: ignore[attr-defined]
                events += self._request_kernel_terminations(state, ctx, reason)
            return self.record(events) or self.position()

        return retry_on_conflict(attempt)

    def record_execution(self, session_id: str, command: c.RecordExecution, ctx: Context) -> int | None:
        """Records the audit event of one code execution; returns its position."""
        return retry_on_conflict(lambda: self.record(session_domain.decide(self.get(session_id), command, ctx, session_id)))

    def report(self, session_id: str, command: c.Command, ctx: Context) -> int | None:
        """Applies a kernel fact reported by an agent; duplicates and late reports change nothing."""
        if not isinstance(command, _KERNEL_FACTS):
            raise TypeError(f"not a kernel fact: {type(command).__name__}")

        def attempt() -> int | None:
            state = self.get(session_id)
            events = session_domain.decide(state, command, ctx, session_id)
            if isinstance(command, c.MarkKernelExited) and state is not None:
                events += self._after_exit(state, events, command, ctx)
            return self.record(events)

        return retry_on_conflict(attempt)

    def _after_exit(
        self, before: SessionState, events: list[Event], command: c.MarkKernelExited, ctx: Context
    ) -> list[Event]:
        extra: list[Event] = []
        agent_id = before.kernel(command.kernel_id).agent_id
        if agent_id is not None:
            extra += self._decide_agent(agent_id, c.ReleaseKernel(kernel_id=command.kernel_id), ctx)
        after = before
        for event in events:
            after = session_domain.evolve(after, event)
        if before.status is not SessionStatus.TERMINATING and after.status is SessionStatus.TERMINATING:
            extra += self._request_kernel_terminations(after, ctx, command.reason)
        return extra

    def _request_kernel_terminations(self, state: SessionState, ctx: Context, reason: Reason) -> list[Event]:
        by_agent: dict[str, list[str]] = {}
        for kernel in state.kernels:
            if kernel.agent_id is not None and not kernel.status.is_terminal:
                by_agent.setdefault(kernel.agent_id, []).append(kernel.kernel_id)
        events: list[Event] = []
        for agent_id, kernel_ids in sorted(by_agent.items()):
            agent = agent_domain.replay(self.load(agent_id))
            for kernel_id in kernel_ids:
                new = agent_domain.decide(agent, c.RequestKernelTermination(kernel_id=kernel_id, reason=reason), ctx, agent_id)
                for event in new:
                    agent = agent_domain.evolve(agent, event)
                events += new
        return events

    def _decide_agent(self, agent_id: str, command: c.Command, ctx: Context) -> list[Event]:
        return agent_domain.decide(agent_domain.replay(self.load(agent_id)), command, ctx, agent_id)
