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
