"""The gateway parses and validates a query text once, then answers it from its bounded caches."""

from __future__ import annotations

from strawberry.extensions.parser_cache import _get_parse_cache
from strawberry.extensions.validation_cache import _get_validate_cache

from services.gateway.schema import DOCUMENT_CACHE_SIZE, build_schema


def test_a_repeated_query_is_parsed_and_validated_once() -> None:
    schema = build_schema()
    query = "query BenchCacheProbe { __typename }"
    parse, validate = _get_parse_cache(DOCUMENT_CACHE_SIZE), _get_validate_cache(DOCUMENT_CACHE_SIZE)
    first = schema.execute_sync(query)
    parsed, validated = parse.cache_info(), validate.cache_info()
    second = schema.execute_sync(query)
    assert first.errors is None and second.data == first.data == {"__typename": "Query"}
    assert parse.cache_info().hits == parsed.hits + 1 and parse.cache_info().misses == parsed.misses
    assert validate.cache_info().hits == validated.hits + 1 and validate.cache_info().misses == validated.misses


def test_the_caches_are_bounded() -> None:
    assert _get_parse_cache(DOCUMENT_CACHE_SIZE).cache_info().maxsize == DOCUMENT_CACHE_SIZE
    assert _get_validate_cache(DOCUMENT_CACHE_SIZE).cache_info().maxsize == DOCUMENT_CACHE_SIZE


def test_an_invalid_query_is_still_refused_when_cached() -> None:
    schema = build_schema()
    for _ in range(2):
        result = schema.execute_sync("query { noSuchField }")
        assert result.errors and "noSuchField" in result.errors[0].message


# --- cost limits: depth, aliases, tokens -------------------------------------------------------------


def test_introspection_and_client_queries_are_within_the_limits() -> None:
    from graphql import get_introspection_query

    assert build_schema().execute_sync(get_introspection_query(descriptions=True)).errors is None


def test_a_document_nested_too_deep_is_refused() -> None:
    from services.gateway.schema import MAX_DEPTH

    deep = "query { " + "__schema { types { fields { type { " * 4 + "name" + " } } } }" * 4 + " }"
    result = build_schema().execute_sync(deep)
    assert result.errors and result.data is None, "refused before anything is resolved"
    assert MAX_DEPTH < 16


def test_a_document_with_too_many_aliases_is_refused() -> None:
    from services.gateway.schema import MAX_ALIASES

    fan_out = "query { " + " ".join(f"a{i}: __typename" for i in range(MAX_ALIASES + 1)) + " }"
    result = build_schema().execute_sync(fan_out)
    assert result.errors and "aliases found" in result.errors[0].message, result.errors
    assert build_schema().execute_sync("query { " + " ".join(f"a{i}: __typename" for i in range(MAX_ALIASES))
                                       + " }").errors is None


def test_a_document_of_too_many_tokens_is_refused_before_it_is_parsed_whole() -> None:
    from services.gateway.schema import MAX_TOKENS

    huge = "query { " + "__typename " * MAX_TOKENS + "}"
    result = build_schema().execute_sync(huge)
    assert result.errors and "token" in result.errors[0].message.lower(), result.errors
