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

A query or a mutation runs in one of its keypair's turns of GraphQL requests in flight
(``Resources.requests_in_flight``, ``auth.middleware.MAX_IN_FLIGHT``), as over HTTP: before, a keypair's 64 sockets
of 100 operations each ran 6,400 at once beside its 16 HTTP requests, and held every connection of the gateway's
pool. A subscription does not take one (it lasts; the subscription slots bound those).
"""

from __future__ import annotations

import functools
import logging

from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler, Operation
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage

from services.common.transient import unavailable_dependency, unavailable_message
from services.gateway.auth.middleware import rate_limited_reason
from services.gateway.context import GatewayContext
from services.gateway.errors import INTERNAL, RATE_LIMITED, SUBSCRIPTION_LIMIT, UNAVAILABLE
from services.gateway.schema import MAX_TOKENS

__all__ = ["MAX_OPERATIONS", "MeteredTransportWSHandler", "takes_a_turn"]

log = logging.getLogger(__name__)

MAX_OPERATIONS = 100
"""Operations (queries, mutations and subscriptions) one websocket may have in flight (strawberry's default,
stated here so that it stays bounded); the keypair's websockets are bounded by its policy."""


CACHED_DOCUMENT_CHARS = 16 << 10
"""Documents up to this long have their operation's kind remembered (``CACHED_DOCUMENTS`` of them): a client sends
the same few again and again. A longer one is parsed each time (strawberry parses it again: its cost, twice)."""
CACHED_DOCUMENTS = 256


def takes_a_turn(query: str, operation_name: str | None) -> bool:
    """Returns True when the operation ``operation_name`` of ``query`` is a query or a mutation: it runs to its one
    answer, in one of its keypair's turns. False for a subscription, and for a document strawberry refuses before
    running anything (it does not parse, or names no single operation)."""
    if len(query) > CACHED_DOCUMENT_CHARS:
        return _takes_a_turn(query, operation_name)
    return _remembered(query, operation_name)


def _takes_a_turn(query: str, operation_name: str | None) -> bool:
    try:
        document = parse(query, no_location=True, max_tokens=MAX_TOKENS)
    except GraphQLError:
        return False
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)
                  and (operation_name is None or (d.name is not None and d.name.value == operation_name))]
    return len(operations) == 1 and operations[0].operation is not OperationType.SUBSCRIPTION


_remembered = functools.lru_cache(maxsize=CACHED_DOCUMENTS)(_takes_a_turn)


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
        """Runs the operation once its keypair's rate limit admits it (a query or a mutation, in one of its
        keypair's turns); else answers it with the refusal."""
        refusal = await self._refusal()
        principal = self.context.principal
        if refusal is not None:
            await operation.send_initial_errors([refusal])
        elif principal is not None and takes_a_turn(operation.query, operation.operation_name):
            async with self.context.resources.requests_in_flight.turn(principal.access_key):
                await super().run_operation(operation)
        else:
            await super().run_operation(operation)

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
