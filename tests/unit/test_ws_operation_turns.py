"""Which websocket operations take one of their keypair's turns of requests in flight
(``services.gateway.ws_operations.takes_a_turn``): queries and mutations, which run to one answer; not subscriptions,
which last (the subscription slots bound them), nor documents strawberry refuses before running anything."""

from __future__ import annotations

import pytest

from services.gateway.ws_operations import CACHED_DOCUMENT_CHARS, takes_a_turn

TWO = "query A { agents { id } } subscription B { sessionEvents(sessionId: \"s\") { position } }"


@pytest.mark.parametrize(("query", "name", "expected"), [
    ("{ agents { id } }", None, True),
    ("query { agents { id } }", None, True),
    ("mutation { terminateSession(id: \"s\") { id } }", None, True),
    ("subscription { sessionEvents(sessionId: \"s\") { position } }", None, False),
    (TWO, "A", True),
    (TWO, "B", False),
    (TWO, None, False),  # two operations and no name: refused before running
    (TWO, "C", False),
    ("{ agents { id ", None, False),  # does not parse
    ("fragment F on Agent { id }", None, False),
    ("query {" + " agents { id }" * 2500 + " }", None, False),  # over the token bound: refused at parse
])
def test_queries_and_mutations_take_a_turn_and_subscriptions_do_not(query: str, name: str | None,
                                                                      expected: bool) -> None:
    assert takes_a_turn(query, name) is expected


def test_a_long_document_is_judged_the_same_without_being_remembered() -> None:
    padding = "#" + "x" * CACHED_DOCUMENT_CHARS + "\n"
    assert takes_a_turn(padding + "subscription { sessionEvents(sessionId: \"s\") { position } }", None) is False
    assert takes_a_turn(padding + "{ agents { id } }", None) is True
