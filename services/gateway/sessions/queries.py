"""Queries: they read only the read models, after waiting for ``afterPosition`` (read-your-writes)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import strawberry

from contracts.status import SessionStatus
from projections.queries.rows import SessionRow
from projections.queries.sessions import session_row
from services.gateway.context import Info, caller
from services.gateway.errors import BAD_INPUT, GatewayError
from services.gateway.limits import ACCESS_KEY, AGGREGATE_ID, STATUSES, checked_value
from services.gateway.readmodels import AfterPosition, await_position
from services.gateway.sessions import readmodels as rm
from services.gateway.sessions.lost_agents import agents_to_check, lost_agent_detail
from services.gateway.sessions.ownership import session_scope
from services.gateway.sessions.refs import find_session
from services.gateway.sessions.types import Agent, EventRecord, Kernel, Session, SessionPage

__all__ = ["MAX_PAGE", "Query"]

MAX_PAGE = 500


def _checked_first(first: int | None, default: int) -> int:
    first = default if first is None else first
    if not 1 <= first <= MAX_PAGE:
        raise GatewayError(BAD_INPUT, f"first must be between 1 and {MAX_PAGE}, got {first}")
    return first


def _checked_statuses(statuses: list[str] | None) -> list[str] | None:
    if statuses is not None:
        checked_value(STATUSES, statuses)
    known = {s.value for s in SessionStatus}
    unknown = sorted(set(statuses or ()) - known)
    if unknown:
        raise GatewayError(BAD_INPUT, f"unknown session status {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return statuses


async def _with_kernels(info: Info, rows: list[SessionRow]) -> list[Session]:
    """Returns the sessions of ``rows`` with their kernels, and the detail of those whose agent is lost."""
    resources = info.context.resources
    kernels = await rm.kernels_of(resources.pool, [row.session_id for row in rows])
    lost = await rm.lost_agents(resources.pool, agents_to_check(rows))
    grace = resources.settings.agent_lost_grace
    return [Session.from_row(row, [Kernel.from_row(k) for k in kernels[row.session_id]],
                             detail=lost_agent_detail(row, lost, grace)) for row in rows]


@strawberry.type
class Query:
    @strawberry.field(description="Sessions, oldest first (newest first with `newestFirst`). Users see their own, "
                      "admins their domain's but a superadmin's, superadmins all (or `owner`'s).")
    async def sessions(
        self, info: Info, status: list[str] | None = None, owner: str | None = None, first: int | None = 50,
        after: Annotated[str | None, strawberry.argument(description="endCursor of the previous page.")] = None,
        after_position: AfterPosition = None,
        newest_first: Annotated[bool, strawberry.argument(
            description="Newest first: the last sessions without paging through all the earlier ones.")] = False,
    ) -> SessionPage:
        principal = caller(info)
        first, statuses = _checked_first(first, 50), _checked_statuses(status)
        if owner is not None:
            checked_value(ACCESS_KEY, owner)
        cursor = rm.decode_cursor(after) if after else None
        scope = session_scope(principal)
        if scope["owner"] is not None:
            if owner is not None and owner != scope["owner"]:
                return SessionPage(edges=[], end_cursor=None, has_next_page=False)
            owner = scope["owner"]
        await await_position(info, after_position)
        rows = await rm.list_sessions(info.context.resources.pool, owner=owner, statuses=statuses, first=first,
                                      after=cursor, domain=scope["domain"], newest_first=newest_first,
                                      hide_superadmins=scope["hide_superadmins"])
        page, more = rows[:first], len(rows) > first
        end = rm.encode_cursor(page[-1].created_at, page[-1].session_id) if page else None
        return SessionPage(edges=await _with_kernels(info, page), end_cursor=end, has_next_page=more)

    @strawberry.field(description="One session with its kernels: `id` is its id, a unique id prefix (at least 4 "
                      "characters) or its name (see the README's rule); null when it names none of the sessions you "
                      "may see; error AMBIGUOUS, listing the candidates, when it names several.")
    async def session(self, info: Info, id: str, after_position: AfterPosition = None) -> Session | None:
        caller(info)
        await await_position(info, after_position)
        row = await find_session(info, id)
        if row is None:
            return None
        return (await _with_kernels(info, [session_row(row)]))[0]

    @strawberry.field(description="The agents: every one, with its hostname, for admins; for a user only those of "
                      "the resource groups it may use (public, or visible to its domain, a project or keypair of its), "
                      "without hostname.")
    async def agents(self, info: Info, after_position: AfterPosition = None) -> list[Agent]:
        principal = caller(info)
        await await_position(info, after_position)
        pool = info.context.resources.pool
        if principal.is_admin:
            return [Agent.from_row(row) for row in await rm.list_agents(pool)]
        rows = await rm.list_agents(pool, user=(principal.domain, principal.user_id))
        return [Agent.from_row(row, with_host=False) for row in rows]

    @strawberry.field(description="The event log in position order (newest first with `newestFirst`). Users see only "
                      "their sessions' events, admins those of their domain's sessions but a superadmin's, superadmins "
                      "every event.")
    async def events(
        self, info: Info, aggregate_id: str | None = None, since: dt.datetime | None = None,
        until: dt.datetime | None = None, first: int | None = 100,
        after_position: Annotated[int | None, strawberry.argument(
            description="Position cursor: only events after it (the read models are awaited up to it first).")] = None,
        before_position: Annotated[int | None, strawberry.argument(
            description="Position cursor: only events before it.")] = None,
        newest_first: Annotated[bool, strawberry.argument(
            description="Newest first: the last events without paging through all the earlier ones.")] = False,
    ) -> list[EventRecord]:
        principal = caller(info)
        first = _checked_first(first, 100)
        if aggregate_id is not None:
            checked_value(AGGREGATE_ID, aggregate_id)
        await await_position(info, after_position)
        rows = await rm.list_events(
            info.context.resources.pool, **session_scope(principal),
            aggregate_id=aggregate_id, since=since, until=until, after=after_position, first=first,
            before=before_position, newest_first=newest_first,
        )
        return [EventRecord.from_row(row) for row in rows]
