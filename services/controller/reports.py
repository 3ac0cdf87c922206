"""Turns agent reports into domain events, idempotently.

Each report maps to one command of the session or agent context; the domain makes
a duplicate or late report a no-op. A report that can never be applied (unknown
session or kernel, a kernel of another agent, an invalid registration) raises
``PermanentError`` so the consumer moves it to the dead letters.
"""

from __future__ import annotations

import logging
from functools import singledispatch
from typing import Callable, Sequence

from nats.aio.msg import Msg
from nats.js.api import Header

from contracts import commands as c
from contracts.reports import (
    AgentStarted,
    AnyReport,
    KernelCreatingReport,
    KernelExitedReport,
    KernelProgressReport,
    KernelPullingReport,
    KernelRunningReport,
    OrphanDestroyedReport,
    clip_detail,
    decode_report,
)
from contracts.status import Reason
from contracts.subjects import SubjectError, report_sender
from contracts.travel import TravelError
from domain.errors import DomainError
from services.application.agents import Agents
from services.application.facade import Facade
from services.common.flow import PermanentError
from services.application.context import make_context
from domain.session import SessionState
from services.application.sessions import Sessions

__all__ = ["EXIT_CODE_RANGE", "MAX_CAUSATION_CHARS", "ReportHandler", "ReportProcessor", "agent_of_subject",
           "causation_of", "command_for", "exit_code_of", "reason_of", "shown"]

log = logging.getLogger(__name__)

_REASONS = {reason.value: reason for reason in Reason}
_PROGRESS = (KernelPullingReport, KernelProgressReport, KernelCreatingReport, KernelRunningReport)

Item = tuple[str, AnyReport, str | None]
"""(sending agent, report, causation id) of one report message."""


EXIT_CODE_RANGE = (-(2**31), 2**31 - 1)
"""The exit codes an exit records: a 32-bit signed integer, as every read model stores it (``kernels.exit_code`` is
``integer``). A process's status is 0-255, a signal's negative; an agent reporting more (a report's ``int`` is
unbounded) had its kernel's end recorded, and the projector dead-lettered it: the kernel stayed RUNNING there."""


def exit_code_of(code: int | None) -> int | None:
    """Returns ``code`` when it is within ``EXIT_CODE_RANGE``, None (unknown) else: the exit still applies (the kernel
    ended; its session ends and its slots and quota are released), only its code is not believed."""
    if code is None or EXIT_CODE_RANGE[0] <= code <= EXIT_CODE_RANGE[1]:
        return code
    log.warning("an exit code of %d bits reported, out of range; recording none", code.bit_length())
    return None


def shown(text: str) -> str:
    """Returns a name an agent reports (a container id, a host name, a backend) as it may be recorded: each control
    character (NUL above all: PostgreSQL's text refuses it, and the projector dead-lettered the event) and each lone
    surrogate U+FFFD, stripped (``clip_detail``; its length is the decoder's to bound, ``contracts.reports``)."""
    return clip_detail(text, len(text)) or ""


MAX_CAUSATION_CHARS = 512
"""The longest causation id a report's message id gives the events it causes: an agent's ids are
``<agent>:<kernel>:<type>[:<n>]`` (``services.agent.reporting``), under 300 characters."""


def causation_of(msg_id: str | None) -> str | None:
    """Returns a report's message id as the causation id of its events, as ``shown`` and at most ``MAX_CAUSATION_CHARS``
    (a header is the sender's to write, and no decoder bounds it: a NUL there had the projector dead-letter every event
    the report caused, and 60 KB of it were copied into each)."""
    return None if msg_id is None else clip_detail(msg_id, MAX_CAUSATION_CHARS) or None


def reason_of(text: str) -> Reason:
    """Returns the reason named ``text``; an unknown one counts as ``self-terminated``."""
    reason = _REASONS.get(text)
    if reason is None:
        log.warning("unknown exit reason %r reported; recording %s", text, Reason.SELF_TERMINATED.value)
        return Reason.SELF_TERMINATED
    return reason


@singledispatch
def command_for(report: AnyReport) -> c.Command:
    """Returns the command that applies ``report``."""
    raise TypeError(f"no command for {type(report).__name__}")


@command_for.register
def _(report: AgentStarted) -> c.Command:
    return c.RegisterAgent(
        capacity=dict(report.capacity), backend=shown(report.backend),
        hostname=shown(report.hostname), resource_group=report.resource_group,
    )


@command_for.register
def _(report: KernelPullingReport) -> c.Command:
    return c.MarkKernelPreparing(kernel_id=report.kernel_id)


@command_for.register
def _(report: KernelProgressReport) -> c.Command:
    return c.RecordKernelProgress(kernel_id=report.kernel_id, detail=clip_detail(report.detail) or "")


@command_for.register
def _(report: KernelCreatingReport) -> c.Command:
    return c.MarkKernelCreating(kernel_id=report.kernel_id)


@command_for.register
def _(report: KernelRunningReport) -> c.Command:
    return c.MarkKernelStarted(kernel_id=report.kernel_id, container_id=shown(report.container_id))


@command_for.register
def _(report: KernelExitedReport) -> c.Command:
    return c.MarkKernelExited(kernel_id=report.kernel_id, exit_code=exit_code_of(report.exit_code),
                              reason=reason_of(report.reason),
                              detail=clip_detail(report.detail) or None)


@command_for.register
def _(report: OrphanDestroyedReport) -> c.Command:
    return c.RecordOrphanDestroyed(kernel_id=report.kernel_id,
                                   container_id=shown(report.container_id),
                                   exit_code=exit_code_of(report.exit_code))


_AGENT_FACTS = (AgentStarted, OrphanDestroyedReport)
"""Reports about the agent itself, applied to its aggregate (not to a session)."""


def agent_of_subject(subject: str) -> str:
    """Returns the agent id of ``rp.agent.<agent_id>.<type>``; raises ``PermanentError`` when
    ``subject`` is not a report subject."""
    try:
        return report_sender(subject)
    except SubjectError as exc:
        raise PermanentError(str(exc)) from exc


class ReportProcessor:
    """Applies reports through the session and agent use cases (blocking: run it in a thread)."""

    def __init__(self, sessions: Sessions, agents: Agents) -> None:
        self._sessions = sessions
        self._agents = agents

    def process(self, sender: str, report: AnyReport, causation_id: str | None = None) -> int | None:
        """Applies ``report`` sent by agent ``sender``; returns the position of the last event
        recorded, None when the report changed nothing."""
        if report.agent_id != sender:
            raise PermanentError(f"agent {sender} sent a report as agent {report.agent_id}")
        ctx = make_context(f"agent:{sender}", causation_id=causation_id)
        command = command_for(report)
        try:
            if isinstance(report, _AGENT_FACTS):
                position = self._agents.handle(sender, command, ctx)
                if position is not None and isinstance(report, AgentStarted):
                    log.info("agent %s registered (%s backend, capacity %s)", sender, report.backend, report.capacity)
                return position
            self._check_owner(sender, report.session_id, report.kernel_id)
            return self._sessions.report(report.session_id, command, ctx)
        except (DomainError, TravelError) as exc:
            raise PermanentError(f"{type(exc).__name__}: {exc}") from exc

    def process_batch(self, items: Sequence[Item]) -> list[Exception | None]:
        """Applies the reports of one fetch; returns, per item, None or the error that refused it.

        Progress reports (pulling, creating, running) change only their session: they are
        applied together in one transaction. Exits (which also release agents and quotas) are
        applied together too, each run of them between two other reports in one transaction, in
        order; the others (registrations) one by one. A kernel's exit is reported after its
        progress, so applying the progress first keeps each session's order. A group whose save is
        refused is applied item by item (``Sessions.report_progress``), so a forged report fails alone.
        """
        outcomes: list[Exception | None] = [None] * len(items)
        self._together(items, [i for i, item in enumerate(items) if isinstance(item[1], _PROGRESS)],
                       self._sessions.report_progress, outcomes)
        exits: list[int] = []
        for i, (sender, report, causation) in enumerate(items):
            if isinstance(report, KernelExitedReport):
                exits.append(i)
            elif not isinstance(report, _PROGRESS):
                self._together(items, exits, self._sessions.report_exits, outcomes)
                exits = []
                try:
                    self.process(sender, report, causation)
                except Exception as exc:  # noqa: BLE001 - settled by the consumer
                    outcomes[i] = exc
        self._together(items, exits, self._sessions.report_exits, outcomes)
        return outcomes

    def _together(self, items: Sequence[Item], indexes: list[int], apply: Callable[..., list[Exception | None]],
                  outcomes: list[Exception | None]) -> None:
        """Applies the session facts of ``items[indexes]`` with ONE call of ``apply`` (a batch use
        case of ``Sessions``), each checked to come from the agent its kernel is assigned to; puts
        each one's outcome in ``outcomes``."""
        facts = []
        for i in indexes:
            sender, report, causation = items[i]
            if report.agent_id != sender:
                outcomes[i] = PermanentError(f"agent {sender} sent a report as agent {report.agent_id}")
                continue
            ctx = make_context(f"agent:{sender}", causation_id=causation)
            facts.append((i, (report.session_id, command_for(report), ctx)))  # type: ignore[union-attr]
        if not facts:
            return
        senders = [items[i][0] for i, _ in facts]

        def assigned_to_sender(index: int, session: SessionState) -> None:
            _check_assigned(session, facts[index][1][1].kernel_id, senders[index])  # type: ignore[attr-defined]

        results = apply([fact for _, fact in facts], guard=assigned_to_sender)
        for (i, _), result in zip(facts, results, strict=True):
            outcomes[i] = _permanent(result)

    def _check_owner(self, sender: str, session_id: str, kernel_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is not None:  # an unknown session: the use case raises NotFoundError
            _check_assigned(session, kernel_id, sender)


def _check_assigned(session: SessionState, kernel_id: str, sender: str) -> None:
    try:
        owner = session.kernel(kernel_id).agent_id
    except DomainError as exc:
        raise PermanentError(f"{type(exc).__name__}: {exc}") from exc
    if owner != sender:
        raise PermanentError(f"kernel {kernel_id} of session {session.id} is not assigned to agent {sender}")


def _permanent(error: Exception | None) -> Exception | None:
    """Returns a domain refusal, or events the store's guard refuses (``TravelError``), as a ``PermanentError``
    (the report can never apply)."""
    if isinstance(error, (DomainError, TravelError)):
        return PermanentError(f"{type(error).__name__}: {error}")
    return error


class ReportHandler:
    """Batch consumer handler: decodes the reports of one fetch and applies them in the store's thread."""

    def __init__(self, processor: ReportProcessor, store: Facade) -> None:
        self._processor = processor
        self._store = store

    async def __call__(self, messages: list[Msg]) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = [None] * len(messages)
        items: list[tuple[int, Item]] = []
        for index, msg in enumerate(messages):
            try:
                report = decode_report(msg.data)
                sender = agent_of_subject(msg.subject)
            except Exception as exc:  # noqa: BLE001 - settled (dead-lettered) by the consumer
                outcomes[index] = exc
                continue
            items.append((index, (sender, report, causation_of((msg.headers or {}).get(Header.MSG_ID.value)))))
        results = await self._store.call(self._processor.process_batch, [i for _, i in items])
        for (index, _), result in zip(items, results, strict=True):
            outcomes[index] = result
        return outcomes
