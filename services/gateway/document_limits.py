"""The count of a document's selections, refused over a bound after parsing and before validation.

graphql-core's OverlappingFieldsCanBeMerged rule compares the fields of a selection set pairwise (and
those of their sub-selections again), so its work grows with the square of the fields: a ~2,000-token
document of 280 times ``sessions { edges { id } }`` took half a second of validation, on the event loop
that serves every request. Counting the selections is one pass over the parsed document.
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import DocumentNode, GraphQLError, SelectionSetNode
from strawberry.extensions import ValidationCache

from services.gateway.errors import BAD_INPUT

__all__ = ["CountedValidationCache", "count_selections"]


def count_selections(document: DocumentNode, limit: int) -> int:
    """Returns the selections (fields, fragment spreads, inline fragments) of every operation and fragment of
    ``document``; the count stops once it passes ``limit``."""
    count = 0
    pending: list[SelectionSetNode] = [d.selection_set for d in document.definitions
                                       if getattr(d, "selection_set", None) is not None]
    while pending and count <= limit:
        selections = pending.pop().selections
        count += len(selections)
        pending.extend(s.selection_set for s in selections if getattr(s, "selection_set", None) is not None)
    return count


class CountedValidationCache(ValidationCache):
    """strawberry's validation cache, with the document's selections counted first: over ``max_selections``,
    the document is refused with code BAD_INPUT and not validated."""

    def __init__(self, *, maxsize: int, max_selections: int) -> None:
        super().__init__(maxsize=maxsize)
        self.max_selections = max_selections

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        assert context.graphql_document is not None  # validation follows a parse that succeeded
        if count_selections(context.graphql_document, self.max_selections) > self.max_selections:
            message = (f"too many selections: at most {self.max_selections} fields, fragment spreads and inline"
                       " fragments per document, every fragment counted; split it into several requests")
            context.pre_execution_errors = [GraphQLError(message, extensions={"code": BAD_INPUT})]
            yield
            return
        yield from super().on_validate()
