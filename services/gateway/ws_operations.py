"""The graphql-transport-ws handler of the view: every operation sent over a websocket counts against its keypair's
rate limit, as an HTTP request does, and a socket has at most ``MAX_OPERATIONS`` in flight.

strawberry runs each ``subscribe`` message (a query, a mutation or a subscription) on a task of its own, and the
auth layer counts only the connection: one admitted socket could otherwise send ``createSession`` without limit.
Here each operation takes one request of its keypair's token bucket (``Resources.rate_limiter``, the one HTTP
requests take from) under the policy's limits as of now (``Resources.current_limits``: a socket may have been
authenticated long before a change), before anything of it runs. Over the limit, the operation is answered with
an ``error`` message, code RATE_LIMITED and the reason of HTTP's 429, and is not run; the socket stays open and
may send it again later. An operation past ``MAX_OPERATIONS`` in flight is answered SUBSCRIPTION_LIMIT, also
without running (and without counting).
"""

from __future__ import annotations

import logging

from graphql import GraphQLError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler, Operation
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage

from services.common.transient import unavailable_dependency, unavailable_message
from services.gateway.auth.middleware import rate_limited_reason
from services.gateway.context import GatewayContext
from services.gateway.errors import INTERNAL, RATE_LIMITED, SUBSCRIPTION_LIMIT, UNAVAILABLE

__all__ = ["MAX_OPERATIONS", "MeteredTransportWSHandler"]

log = logging.getLogger(__name__)

MAX_OPERATIONS = 100
"""Operations (queries, mutations and subscriptions) one websocket may have in flight (strawberry's default,
stated here so that it stays bounded); the keypair's websockets are bounded by its policy."""


def _error(code: str, message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code})


def _well_formed(message: SubscribeMessage) -> bool:
    """Returns True when a ``subscribe`` message has the protocol's shape (the fields strawberry reads)."""
    payload = message.get("payload")
    if not isinstance(message.get("id"), str) or not isinstance(payload, dict):
        return False
    return (isinstance(payload.get("query"), str) and isinstance(payload.get("variables", {}), dict | None)
            and isinstance(payload.get("operationName"), str | None))


class MeteredTransportWSHandler(BaseGraphQLTransportWSHandler[GatewayContext, None]):
    """strawberry's graphql-transport-ws handler, with each operation counted against the rate limit before it
    runs and the operations in flight bounded with a coded refusal."""

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        """strawberry's, except that a message of the wrong shape closes the socket with 4400 (strawberry's
        handler failed on an unhashable ``id`` or a ``payload`` that is not an object, and dropped the socket
        without a close frame), and an operation past the socket's bound is refused with code SUBSCRIPTION_LIMIT
        (strawberry's refusal has no code)."""
        if not _well_formed(message):
            await self.handle_invalid_message("a subscribe message has a string id and a payload "
                                              '{"query": string, "variables": object, "operationName": string}')
            return
        cap = self.max_subscriptions_per_connection
        if (self.connection_acknowledged and cap is not None and len(self.operations) >= cap
                and message["id"] not in self.operations):
            refusal = _error(SUBSCRIPTION_LIMIT, f"too many operations in flight on this connection: at most {cap}; "
                                                 "wait for one to complete (or complete one) first")
            await self.send_message({"id": message["id"], "type": "error", "payload": [refusal.formatted]})
            return
        await super().handle_subscribe(message)

    async def run_operation(self, operation: Operation[GatewayContext, None]) -> None:
        """Runs the operation once its keypair's rate limit admits it; else answers it with the refusal."""
        refusal = await self._refusal()
        if refusal is None:
            await super().run_operation(operation)
        else:
            await operation.send_initial_errors([refusal])

    async def _refusal(self) -> GraphQLError | None:
        """Counts one request of the socket's caller; returns why the operation may not run (None: it may). A
        socket without a caller runs it: its resolvers answer UNAUTHENTICATED."""
        principal = self.context.principal
        if principal is None:
            return None
        resources = self.context.resources
        try:
            limits = self.context.limits = await resources.current_limits(principal)
        except Exception as exc:  # noqa: BLE001 - the operation is answered in every case, never left in flight
            away = unavailable_dependency(exc)
            if away is None:
                log.exception("cannot read the limits of %s for a websocket operation", principal.access_key)
                return _error(INTERNAL, "internal error")
            log.warning("cannot read the limits of %s while %s is away: %s", principal.access_key, away, exc)
            return _error(UNAVAILABLE, unavailable_message(away, exc))
        decision = resources.rate_limiter.take(principal.access_key, limits.rate_limit)
        if decision.admitted:
            return None
        log.info("rate limited %s: a websocket operation", principal.access_key)
        return _error(RATE_LIMITED, rate_limited_reason(decision))
