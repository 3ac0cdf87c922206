"""Session cursors and the mapping of domain errors to GraphQL error codes."""

from __future__ import annotations

import datetime as dt

import pytest

from contracts.slots import SlotError
from domain.errors import AlreadyExistsError, InvalidRequestError, InvalidTransitionError, NotFoundError
from services.gateway.errors import GatewayError, from_domain
from services.gateway.sessions.readmodels import decode_cursor, encode_cursor


def test_cursor_round_trip() -> None:
    key = (dt.datetime(2026, 1, 1, 12, 30, 1, 5, tzinfo=dt.UTC), "0123abcd")
    assert decode_cursor(encode_cursor(*key)) == key


@pytest.mark.parametrize("cursor", ["", "not-base64!", "bm9waXBl", encode_cursor(dt.datetime(2026, 1, 1), "x")])
def test_garbage_cursors_are_bad_input(cursor: str) -> None:
    with pytest.raises(GatewayError) as refused:
        decode_cursor(cursor)
    assert refused.value.code == "BAD_INPUT"


@pytest.mark.parametrize("error, code", [
    (InvalidRequestError("x"), "BAD_INPUT"), (SlotError("x"), "BAD_INPUT"), (NotFoundError("x"), "NOT_FOUND"),
    (AlreadyExistsError("x"), "CONFLICT"), (InvalidTransitionError("x"), "CONFLICT"),
])
def test_domain_errors_map_to_codes(error: Exception, code: str) -> None:
    mapped = from_domain(error)
    assert mapped.code == code and mapped.extensions == {"code": code} and mapped.message == "x"


def test_other_errors_are_not_disguised() -> None:
    with pytest.raises(KeyError):
        from_domain(KeyError("boom"))
