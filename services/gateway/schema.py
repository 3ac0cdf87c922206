"""The GraphQL schema, assembled from the features' queries, mutations and subscriptions, with internal errors masked."""

from __future__ import annotations

import logging
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import AddValidationRules, MaskErrors, MaxTokensLimiter, ParserCache
from strawberry.extensions.max_aliases import create_validator as aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.tools import merge_types

from services.gateway.deadletters.resolvers import DeadLetterMutation, DeadLetterQuery
from services.common.transient import unavailable_dependency, unavailable_message
from services.gateway.document_limits import CountedValidationCache
from services.gateway.errors import BAD_INPUT, INTERNAL, UNAVAILABLE, GatewayError
from services.gateway.execution.mutations import ExecutionMutation
from services.gateway.execution.queries import ExecutionQuery
from services.gateway.execution.subscriptions import ExecutionSubscription
from services.gateway.health.doctor import DoctorQuery
from services.gateway.sessions.mutations import Mutation
from services.gateway.sessions.queries import Query
from services.gateway.sessions.subscriptions import Subscription
from services.gateway.tenancy.mutations import TenancyMutation
from services.gateway.tenancy.queries import TenancyQuery
from services.gateway.tenancy.usage import UsageQuery
from services.gateway.vfolders.mutations import VFolderMutation
from services.gateway.vfolders.queries import VFolderQuery
from services.gateway.vfolders.subscriptions import VFolderSubscription
from services.gateway.vfolders.transfers import TransferMutation, TransferQuery

__all__ = ["DOCUMENT_CACHE_SIZE", "MAX_ALIASES", "MAX_DEPTH", "MAX_SELECTIONS", "MAX_TOKENS", "build_schema"]

DOCUMENT_CACHE_SIZE = 512
"""Distinct query texts whose parse and validation are kept (LRU; clients send a few dozen; bounded so that
unique texts cannot grow the memory)."""
MAX_DEPTH = 15
"""Nesting of fields a document may have (GraphiQL's introspection needs 13)."""
MAX_ALIASES = 20
"""Aliases per document: one request must not fan out into thousands of resolver calls (say, aliased
read-your-writes waits)."""
MAX_TOKENS = 2000
"""Tokens per document, counted while parsing, before any other work (introspection has ~160)."""
MAX_SELECTIONS = 200
"""Selections per document (fields, fragment spreads, inline fragments; every fragment counted), after parsing
and before validation, whose overlapping-fields rule is quadratic in them: 200 take ~30 ms to validate, 280
took 0.5 s (introspection has ~80, the largest query of the SDK and CLI, ``berth session info``'s, 39)."""
_COST_RULES = [depth_rule(MAX_DEPTH, None), aliases_rule(MAX_ALIASES)]
"""strawberry's depth and alias rules, built once: the same rule classes for every request keep the
validation cache's key stable (its limiter extensions would build new classes per request)."""

log = logging.getLogger(__name__)

MAX_INPUT_MESSAGE = 500
"""Characters of a refusal of the request's variables kept (the message may quote the value)."""


def _is_internal(error: GraphQLError) -> bool:
    original = error.original_error
    return original is not None and not isinstance(original, GatewayError)


class _MaskInternalErrors(MaskErrors):
    """Replaces an unexpected error by "internal error" with code INTERNAL (details stay in the log);
    one caused by PostgreSQL, NATS or Docker being away by "<it> is unavailable; retry" (or PostgreSQL's disk
    being full, ``unavailable_message``), code UNAVAILABLE;
    variables that do not fit the schema by graphql-core's refusal (≤ 500 characters), code BAD_INPUT."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=_is_internal, error_message="internal error")

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        masked = super().anonymise_error(error)
        if isinstance(error.original_error, GraphQLError):  # the request's variables do not fit the schema
            masked.message = error.message[:MAX_INPUT_MESSAGE]
            masked.extensions = {"code": BAD_INPUT}
            return masked
        away = unavailable_dependency(error.original_error) if error.original_error is not None else None
        if away is not None:  # an outage the client waits out and retries (with its idempotency key)
            masked.message = unavailable_message(away, error.original_error)
            masked.extensions = {"code": UNAVAILABLE}
        else:
            masked.extensions = {"code": INTERNAL}
        return masked


class BerthSchema(strawberry.Schema):
    """Logs unexpected resolver errors with their traceback; expected ones (GatewayError) stay quiet."""

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        for error in errors:
            if _is_internal(error) and not isinstance(error.original_error, GraphQLError):
                log.error("unexpected error in %s", error.path, exc_info=error.original_error)


def build_schema() -> strawberry.Schema:
    """Returns the gateway's schema; an unexpected error reaches the client as "internal error"."""
    return BerthSchema(
        query=merge_types("Query", (ExecutionQuery, Query, DoctorQuery, DeadLetterQuery, TenancyQuery, UsageQuery,
                                    VFolderQuery, TransferQuery)),
        mutation=merge_types("Mutation", (Mutation, ExecutionMutation, TenancyMutation, DeadLetterMutation,
                                          VFolderMutation, TransferMutation)),
        subscription=merge_types("Subscription", (ExecutionSubscription, Subscription, VFolderSubscription)),
        extensions=[_MaskInternalErrors, lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
                    lambda: ParserCache(maxsize=DOCUMENT_CACHE_SIZE), lambda: AddValidationRules(_COST_RULES),
                    lambda: CountedValidationCache(maxsize=DOCUMENT_CACHE_SIZE, max_selections=MAX_SELECTIONS)],
    )
