"""The gateway's JSON decoding of request bodies and websocket messages: JSON nested too deep, lone UTF-16
surrogates (escaped or raw, in values, keys or the query), invalid Unicode and numbers of too many digits are
refused with a reason (a JSONDecodeError, as strawberry expects); everything else decodes as ``json.loads``."""

from __future__ import annotations

import json

import pytest

from services.gateway.request_json import NOT_JSON, RefusedJSONError, decode_json, refusal

DEEP = 50_000


@pytest.mark.parametrize("text, reason", [
    ('{"variables": {"x": ' + "[" * DEEP + "]" * DEEP + "}}", "nested too deep"),
    ('{"x": ' + '{"a": ' * DEEP + "1" + "}" * DEEP + "}", "nested too deep"),
    ('{"x": "a\\ud800"}', "lone UTF-16 surrogate"),
    ('{"x": "\\uDFFFb"}', "lone UTF-16 surrogate"),
    ('{"\\udbff": 1}', "lone UTF-16 surrogate"),
    ('{"query": "{ __typename } # \\ude00\\ud83d"}', "lone UTF-16 surrogate"),  # a pair the wrong way round
    ('{"x": ' + "[" * 900 + '"\\ud800"' + "]" * 900 + "}", "lone UTF-16 surrogate"),
    ('{"n": ' + "1" * 5000 + "}", "cannot be decoded"),
])
def test_a_text_that_would_fail_later_is_refused_with_its_reason(text: str, reason: str) -> None:
    for data in (text, text.encode()):
        with pytest.raises(RefusedJSONError) as refused:
            decode_json(data)
        assert isinstance(refused.value, json.JSONDecodeError) and reason in refusal(refused.value)


def test_a_text_holding_a_raw_surrogate_is_refused() -> None:
    """A websocket message is text already: ``json.loads`` takes a raw surrogate in a string as it is."""
    with pytest.raises(RefusedJSONError, match="lone UTF-16 surrogate"):
        decode_json('{"x": "a\ud800"}')


@pytest.mark.parametrize("data", [b'{"x": "a\xed\xa0\x80"}', b'{"x": "\xff"}', '{"x": "a\ud800"}'.encode("utf-16-le",
                                                                                                    "surrogatepass")])
def test_bytes_not_in_their_encoding_are_refused(data: bytes) -> None:
    with pytest.raises(RefusedJSONError, match="not valid Unicode"):
        decode_json(data)


@pytest.mark.parametrize("text", [
    '{"x": "\\ud83d\\ude00 \\uD83D\\uDE00"}',  # pairs
    '{"x": "\\\\ud800 is text"}',  # an escaped backslash, then "ud800"
    '{"x": "\u00e9\u4e2d\U0001f600", "y": [1, 2.5, null, true], "z": {"a": {}}}',
    '{"x": ' + "[" * 500 + "]" * 500 + "}",
    '{"n": ' + "1" * 4000 + "}",
])
def test_everything_else_decodes_as_json_loads(text: str) -> None:
    for data in (text, text.encode(), text.encode("utf-16")):
        assert decode_json(data) == json.loads(text)


def test_a_text_that_is_not_json_is_a_json_decode_error_told_as_not_json() -> None:
    for data in ("{not json", b"", b"\xef\xbb\xbf"):
        with pytest.raises(json.JSONDecodeError) as failed:
            decode_json(data)
        assert not isinstance(failed.value, RefusedJSONError) and refusal(failed.value) == NOT_JSON
