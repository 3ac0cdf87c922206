"""Use cases of the session context: request, terminate, and kernel lifecycle facts.

When a session that was scheduled (and so holds quota) reaches a terminal status, the
same transaction records ``QuotaReleased`` in each of its quota scopes (keypair,
project, domain); the terminal transition happens once, and a release of a session
that does not hold is a no-op, so each scope is released exactly once.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Sequence, TypeVar

from contracts import commands as c
from contracts.envelope import Event
from contracts.session import ExecutionFinished
from contracts.quota import quota_id
from contracts.session_names import SessionNameClaimed, name_claim_id
from contracts.slots import sum_slots
from contracts.status import Reason, SessionStatus
from domain import agent as agent_domain
from domain import quota as quota_domain
from domain import session as session_domain
from domain import session_names
from domain.emitting import Context
from domain.session import SessionState
from services.application.long_lived import LONG_LIVED
from services.application.session_reads import Reads
from services.common.store import BerthApplication, ConcurrencyError, retry_on_conflict
from services.common.transient import unavailable_dependency

__all__ = ["PROGRESS_FACTS", "Guard", "Sessions", "was_scheduled"]

log = logging.getLogger(__name__)

_KERNEL_FACTS = (c.MarkKernelPreparing, c.RecordKernelProgress, c.MarkKernelCreating, c.MarkKernelStarted,
                 c.MarkKernelExited)
PROGRESS_FACTS = (c.MarkKernelPreparing, c.RecordKernelProgress, c.MarkKernelCreating, c.MarkKernelStarted)
"""Kernel facts that change only their session (no agent, no quota): they can be batched."""

T = TypeVar("T")


class Missing:
    """The type of ``MISSING``: an argument not given (None is a value there)."""


MISSING = Missing()

Guard = Callable[[int, SessionState], None]
"""Checks item ``i`` of a batch against its session before it is applied; raises to refuse it."""


class Sessions(BerthApplication):
    """Loads sessions, decides, and saves the outcome with the agents it touches, atomically."""

    long_lived = LONG_LIVED

    def get(self, session_id: str) -> SessionState | None:
        """Returns the current state of a session, None when unknown."""
        return self.current(session_id, session_domain.evolve)

    def request(self, session_id: str, command: c.RequestSession, ctx: Context, *, unique_name: bool = False) -> int:
        """Records a new session; returns the position of its ``session.requested`` event.

        With ``unique_name`` (the API's requests), the same transaction claims the session's name for
        its owner (``domain.session_names``): refused with ``AlreadyExistsError`` naming the live
        session that holds it; of two concurrent requests for one name, one conflicts on the claim,
        retries and is refused."""

        def attempt() -> int:
            events = session_domain.decide(self.get(session_id), command, ctx, session_id)
            if unique_name:
                events = self._claim_name(session_id, command, ctx) + events
            position = self.record(events)
            assert position is not None
            return position

        return retry_on_conflict(attempt) if unique_name else attempt()

    def request_many(self, requests: Sequence[tuple[str, c.RequestSession, Context]]) -> list[int | Exception]:
        """``request(id, command, ctx, unique_name=True)`` of several sessions, saved in ONE
        transaction (group commit) when their aggregates are disjoint. A request that touches an
        aggregate another one of the group touches (two claims of one name), that is refused, or that
        belongs to a group whose save failed, runs on its own afterwards: each outcome, a position or
        the error, is what ``request`` alone would have given.

        A requested session is new (its id is fresh), so the group decides on "no such session yet"
        without reading it: if one did exist, the save conflicts on its first version, and every
        request of the group runs alone, reading its state first. The claims of the group's names are
        read with one statement."""
        outcomes: list[int | Exception | None] = [None] * len(requests)
        grouped: list[int] = []
        groups: list[list[Event]] = []
        alone: list[int] = []
        touched: set[str] = set()
        claims = self.last_events([name_claim_id(command.owner, command.spec.name) for _, command, _ in requests])
        for i, (session_id, command, ctx) in enumerate(requests):
            try:
                last = claims[name_claim_id(command.owner, command.spec.name)]
                events = self._claim_name(session_id, command, ctx, last) + session_domain.decide(
                    None, command, ctx, session_id)
            except Exception:  # noqa: BLE001 - decided again, alone, below: the error is then its outcome
                alone.append(i)
                continue
            ids = {event.originator_id for event in events}
            if ids & touched:
                alone.append(i)
                continue
            touched |= ids
            grouped.append(i)
            groups.append(events)
        if groups:
            try:
                for i, position in zip(grouped, self.record_groups(groups), strict=True):
                    outcomes[i] = position
            except Exception:  # noqa: BLE001 - a conflict or a bad event: each runs alone to find whose
                alone = sorted(alone + grouped)
        for i in alone:
            session_id, command, ctx = requests[i]
            try:
                outcomes[i] = self.request(session_id, command, ctx, unique_name=True)
            except Exception as exc:  # noqa: BLE001 - the caller's outcome
                outcomes[i] = exc
        return outcomes  # type: ignore[return-value]

    def _claim_name(self, session_id: str, command: c.RequestSession, ctx: Context,
                    last: Event | None | Missing = MISSING) -> list[Event]:
        """Returns the claim of the request's name; reads only the claim's last event (constant cost),
        unless the caller read it already (``last``: the claim's last event, None when it has none)."""
        if isinstance(last, Missing):
            last = self.last_event(name_claim_id(command.owner, command.spec.name))
        last = last if isinstance(last, SessionNameClaimed) else None
        holder = self.get(last.session_id) if last is not None else None
        return session_names.claim(last, holder, owner=command.owner, name=command.spec.name, session_id=session_id,
                                   ctx=ctx)

    def terminate(self, session_id: str, ctx: Context, reason: Reason = Reason.USER_REQUESTED) -> int | None:
        """Cancels a pending session or starts terminating its kernels; returns the position."""

        def attempt() -> int | None:
            return self.record(self._termination(Reads(self), session_id, ctx, reason)) or self.position()

        return retry_on_conflict(attempt)

    def terminate_many(self, items: Sequence[tuple[str, Context]]) -> list[int | Exception]:
        """``terminate`` (user-requested) of several sessions in ONE transaction (group commit), each
        decided on the states the earlier ones left (their agents, quota scopes); returns, per item,
        its position or the error that refused it (which records nothing for it). When the group's
        save keeps conflicting (or fails), each item runs alone, as ``terminate``."""

        def attempt() -> list[int | Exception]:
            groups, outcomes = self._each(
                self._reads_of(session_id for session_id, _ in items), items,
                lambda reads, _, item: self._termination(reads, item[0], item[1]))
            positions = self.record_groups(groups)
            now: int | None = None
            results: list[int | Exception] = []
            for outcome, position in zip(outcomes, positions, strict=True):
                if outcome is None and position is None:  # nothing to record: already ending or ended
                    now = now if now is not None else self.position()
                results.append(outcome if outcome is not None else position if position is not None else now)  # type: ignore[arg-type]
            return results

        try:
            return retry_on_conflict(attempt, attempts=3)
        except Exception:  # noqa: BLE001 - each alone, so that each gets its own outcome
            log.debug("a group of %d terminations failed; terminating each alone", len(items), exc_info=True)
        alone: list[int | Exception] = []
        for session_id, ctx in items:
            try:
                alone.append(self.terminate(session_id, ctx) or self.position())
            except Exception as exc:  # noqa: BLE001 - the caller's outcome
                alone.append(exc)
        return alone

    def _termination(self, reads: Reads, session_id: str, ctx: Context,
                     reason: Reason = Reason.USER_REQUESTED) -> list[Event]:
        state = reads.session(session_id)
        events = reads.decided(session_domain.decide(state, c.TerminateSession(reason=reason), ctx, session_id))
        if state is not None and events and events[-1].status is SessionStatus.TERMINATING:  # type: ignore[attr-defined]
            events += self._request_kernel_terminations(reads, state, ctx, reason)
        if state is not None:
            events += self._release_quota_if_ended(reads, state, events, ctx)
        return events

    def _reads_of(self, session_ids: Iterable[str], *, quotas: bool = False) -> Reads:
        """A batch's ``Reads``, its sessions read in one read (``Reads.read_sessions``)."""
        reads = Reads(self)
        reads.read_sessions(session_ids, quotas=quotas)
        return reads

    @staticmethod
    def _each(reads: Reads, items: Sequence[T], decide: Callable[[Reads, int, T], list[Event]]
              ) -> tuple[list[list[Event]], list[Exception | None]]:
        """Decides each item in turn on ``reads`` (which the accepted ones' events move on); returns
        each item's events ([] when refused) and its error (None when accepted)."""
        groups: list[list[Event]] = []
        outcomes: list[Exception | None] = []
        for index, item in enumerate(items):
            before = reads.mark()
            try:
                groups.append(decide(reads, index, item))
                outcomes.append(None)
            except Exception as exc:  # noqa: BLE001 - one refused item must not refuse the batch
                reads.restore(before)
                groups.append([])
                outcomes.append(exc)
        return groups, outcomes

    def record_execution(self, session_id: str, command: c.RecordExecution, ctx: Context,
                         *, seen_version: int | None = None) -> int | None:
        """Records the audit event of one code execution; returns its position. With
        ``seen_version`` (the session's version before the run) it is idempotent: when an
        ``ExecutionFinished`` of the same run was recorded since (a retry after a save whose
        outcome was not known), it records nothing and returns None."""

        def attempt() -> int | None:
            state = self.get(session_id)
            if seen_version is not None and state is not None and state.version > seen_version and any(
                    isinstance(e, ExecutionFinished) and e.run_id == command.run_id
                    for e in self._read_after(session_id, seen_version)):
                return None
            return self.record(session_domain.decide(state, command, ctx, session_id))

        return retry_on_conflict(attempt)

    def report(self, session_id: str, command: c.Command, ctx: Context) -> int | None:
        """Applies a kernel fact reported by an agent; duplicates and late reports change nothing."""
        if not isinstance(command, _KERNEL_FACTS):
            raise TypeError(f"not a kernel fact: {type(command).__name__}")

        def attempt() -> int | None:
            return self.record(self._report_events(Reads(self), session_id, command, ctx))

        return retry_on_conflict(attempt)

    def report_exits(
        self, items: Sequence[tuple[str, c.MarkKernelExited, Context]], guard: Guard | None = None
    ) -> list[Exception | None]:
        """``report`` of many kernel exits in **one** transaction, each decided against the states the
        earlier ones left (its session, its agent, the quota scopes it releases); returns, per item,
        None when applied (or a no-op) or the error that refused it (unknown session, a ``guard``
        refusal, a domain error, a save that failed: ``_each_alone_if_refused``); a refused item records
        nothing and does not stop the others."""
        for _, command, _ in items:
            if not isinstance(command, c.MarkKernelExited):
                raise TypeError(f"not a kernel exit: {type(command).__name__}")

        def exit_of(reads: Reads, index: int, item: tuple[str, c.MarkKernelExited, Context]) -> list[Event]:
            session_id, command, ctx = item
            state = reads.session(session_id)
            if state is not None and guard is not None:
                guard(index, state)
            return self._report_events(reads, session_id, command, ctx)

        def attempt() -> list[Exception | None]:
            reads = self._reads_of((session_id for session_id, _, _ in items), quotas=True)
            groups, outcomes = self._each(reads, items, exit_of)
            self.record([event for group in groups for event in group])
            return outcomes

        return self._each_alone_if_refused(attempt, items, guard, self.report_exits)

    def _report_events(self, reads: Reads, session_id: str, command: c.Command, ctx: Context) -> list[Event]:
        state = reads.session(session_id)
        events = reads.decided(session_domain.decide(state, command, ctx, session_id))
        if isinstance(command, c.MarkKernelExited) and state is not None:
            events += self._after_exit(reads, state, events, command, ctx)
            events += self._release_quota_if_ended(reads, state, events, ctx)
        return events

    def report_progress(
        self, items: Sequence[tuple[str, c.Command, Context]], guard: Guard | None = None
    ) -> list[Exception | None]:
        """Applies many progress facts (``PROGRESS_FACTS``) in **one** transaction; returns, per item,
        None when applied (or a no-op) or the error that refused it (unknown session, a ``guard``
        refusal, a domain error, a save that failed: ``_each_alone_if_refused``); a refused item records
        nothing and does not stop the others."""
        for _, command, _ in items:
            if not isinstance(command, PROGRESS_FACTS):
                raise TypeError(f"not a progress fact: {type(command).__name__}")

        def attempt() -> list[Exception | None]:
            states = self.current_many([session_id for session_id, _, _ in items], session_domain.evolve)
            events: list[Event] = []
            outcomes: list[Exception | None] = []
            for index, (session_id, command, ctx) in enumerate(items):
                state = states[session_id]
                try:
                    if state is not None and guard is not None:
                        guard(index, state)
                    new = session_domain.decide(state, command, ctx, session_id)
                except Exception as exc:  # noqa: BLE001 - one bad fact must not refuse the batch
                    outcomes.append(exc)
                    states[session_id] = state
                    continue
                for event in new:
                    state = session_domain.evolve(state, event)
                states[session_id] = state
                events += new
                outcomes.append(None)
            self.record(events)
            return outcomes

        return self._each_alone_if_refused(attempt, items, guard, self.report_progress)

    def _each_alone_if_refused(self, attempt: Callable[[], list[Exception | None]], items: Sequence[T],
                               guard: Guard | None, apply: Callable[..., list[Exception | None]]
                               ) -> list[Exception | None]:
        """Returns ``attempt()`` (one save of every item; retried after a conflict). When its save fails for
        another reason than a conflict or an outage (an event the store's guard refuses, say), each item is
        applied on its own (``apply([item], guard)``), so that only the bad one fails: before, one forged
        report refused every report of its fetch, from every agent, until all were dead-lettered."""
        try:
            return retry_on_conflict(attempt)
        except ConcurrencyError:
            raise
        except Exception as exc:  # noqa: BLE001 - refused as a whole: each alone below, unless an outage
            if len(items) < 2 or unavailable_dependency(exc) is not None:
                raise
            log.warning("a group of %d kernel facts was refused (%s: %s); applying each alone",
                        len(items), type(exc).__name__, exc)
        outcomes: list[Exception | None] = []
        for index, item in enumerate(items):
            try:
                outcomes += apply([item], _guard_of(guard, index))
            except Exception as exc:  # noqa: BLE001 - its own outcome
                outcomes.append(exc)
        return outcomes

    def _after_exit(
        self, reads: Reads, before: SessionState, events: list[Event], command: c.MarkKernelExited, ctx: Context
    ) -> list[Event]:
        extra: list[Event] = []
        agent_id = before.kernel(command.kernel_id).agent_id
        if agent_id is not None:
            extra += reads.decided(agent_domain.decide(
                reads.agent(agent_id), c.ReleaseKernel(kernel_id=command.kernel_id), ctx, agent_id))
        after = before
        for event in events:
            after = session_domain.evolve(after, event)
        if before.status is not SessionStatus.TERMINATING and after.status is SessionStatus.TERMINATING:
            extra += self._request_kernel_terminations(reads, after, ctx, command.reason)
        return extra

    def _request_kernel_terminations(self, reads: Reads, state: SessionState, ctx: Context,
                                     reason: Reason) -> list[Event]:
        by_agent: dict[str, list[str]] = {}
        for kernel in state.kernels:
            if kernel.agent_id is not None and not kernel.status.is_terminal:
                by_agent.setdefault(kernel.agent_id, []).append(kernel.kernel_id)
        events: list[Event] = []
        for agent_id, kernel_ids in sorted(by_agent.items()):
            for kernel_id in kernel_ids:
                events += reads.decided(agent_domain.decide(
                    reads.agent(agent_id), c.RequestKernelTermination(kernel_id=kernel_id, reason=reason), ctx, agent_id))
        return events

    def _release_quota_if_ended(self, reads: Reads, before: SessionState, events: list[Event],
                                ctx: Context) -> list[Event]:
        """Returns the ``QuotaReleased`` events due when ``events`` end a session that was scheduled."""
        after = before
        for event in events:
            if event.originator_id == before.id:
                after = session_domain.evolve(after, event)
        if before.status.is_terminal or not after.status.is_terminal or not was_scheduled(after):
            return []
        slots = sum_slots(kernel.slots for kernel in after.kernels)
        released: list[Event] = []
        for scope, name in quota_domain.quota_scopes(after.owner, after.spec.project, after.spec.domain):
            aggregate_id = quota_id(scope, name)
            released += reads.decided(quota_domain.release_holder(aggregate_id, reads.version(aggregate_id), after.id,
                                                                  slots, ctx))
        return released

    def version_of(self, aggregate_id: str) -> int:
        """Returns the current version of an aggregate (0 when it has no events) in one indexed read."""
        last = self.last_event(aggregate_id)
        return last.originator_version if last is not None else 0


def was_scheduled(state: SessionState) -> bool:
    """Returns True when the session was ever placed (so it consumed quota): a PENDING session
    cancelled never was."""
    return any(kernel.agent_id is not None for kernel in state.kernels)


def _guard_of(guard: Guard | None, index: int) -> Guard | None:
    """Returns ``guard`` as it checks item ``index`` of a batch, for that item applied alone (as item 0)."""
    if guard is None:
        return None
    check = guard
    return lambda _, state: check(index, state)
