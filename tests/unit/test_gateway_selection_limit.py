"""A document of too many selections is refused after parsing and before its (quadratic) validation, with
code BAD_INPUT; every document the SDK and CLI send, and GraphiQL's introspection, is within the bound."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from graphql import get_introspection_query, parse
from strawberry.extensions.validation_cache import _get_validate_cache

import services.cli
import services.sdk
from services.gateway.document_limits import count_selections
from services.gateway.schema import DOCUMENT_CACHE_SIZE, MAX_SELECTIONS, MAX_TOKENS, build_schema

WIDE = [  # under 2,000 tokens each: validating them took 0.1-0.6 s, on the event loop
    "{" + " sessions{edges{id}}" * 280 + "}",
    "{" + " sessions{edges{kernels{id}}}" * 195 + "}",
    "fragment F on Query { sessions { edges { id } } } {" + " ... on Query { ...F }" * 250 + "}",
]


@pytest.mark.parametrize("document", WIDE)
def test_a_document_of_too_many_selections_is_refused_before_validation(document: str) -> None:
    parse(document, max_tokens=MAX_TOKENS)  # within the token limit: the count is what refuses it
    validate = _get_validate_cache(DOCUMENT_CACHE_SIZE)
    validated = validate.cache_info()
    result = build_schema().execute_sync(document)
    assert result.data is None and result.errors and len(result.errors) == 1
    error = result.errors[0]
    assert f"too many selections: at most {MAX_SELECTIONS}" in error.message
    assert error.extensions == {"code": "BAD_INPUT"}
    assert validate.cache_info() == validated, "refused without being validated"


def test_a_document_at_the_limit_is_validated_and_answered() -> None:
    at_limit = "{" + " __typename" * MAX_SELECTIONS + "}"
    assert count_selections(parse(at_limit), MAX_SELECTIONS) == MAX_SELECTIONS
    assert build_schema().execute_sync(at_limit).data == {"__typename": "Query"}
    over = build_schema().execute_sync("{" + " __typename" * (MAX_SELECTIONS + 1) + "}")
    assert over.errors and over.errors[0].extensions == {"code": "BAD_INPUT"}


def test_fragments_and_their_spreads_count() -> None:
    document = parse("query { ...A ... on Query { b: __typename } }"
                     " fragment A on Query { c: __typename d: __typename }")
    assert count_selections(document, 100) == 5  # the spread and the inline fragment, b, c and d


def _client_documents() -> dict[str, str]:
    """Returns the GraphQL documents that the SDK's and the CLI's modules define, by qualified name."""
    found: dict[str, str] = {}
    for package in (services.sdk, services.cli):
        for module_info in pkgutil.iter_modules(package.__path__):
            if module_info.name == "__main__":
                continue
            module = importlib.import_module(f"{package.__name__}.{module_info.name}")
            for name, value in vars(module).items():
                if isinstance(value, str) and value.lstrip().startswith(("query", "mutation", "subscription")):
                    found[f"{module.__name__}.{name}"] = value
    return found


def test_the_sdk_and_cli_documents_and_introspection_are_within_the_limit() -> None:
    documents = _client_documents()
    assert len(documents) > 30, sorted(documents)
    documents["introspection"] = get_introspection_query(descriptions=True, specified_by_url=True,
                                                         directive_is_repeatable=True, schema_description=True,
                                                         input_value_deprecation=True)
    counts = {name: count_selections(parse(text), MAX_SELECTIONS) for name, text in documents.items()}
    assert max(counts.values()) <= MAX_SELECTIONS // 2, counts
