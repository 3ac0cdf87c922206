"""Backend.AI request signing (services.sdk.signing): what the signature covers and header parsing."""

from __future__ import annotations

import datetime as dt

import pytest

from services.sdk.signing import API_VERSION, SignatureError, parse_authorization, sign_request, signature_for

DATE = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
BASE = dict(secret_key="s" * 40, method="POST", path="/graphql", date=DATE, host="127.0.0.1:8080",
            content_type="application/json", body=b'{"query": "{ agents { id } }"}')


def test_signature_is_deterministic_hex_sha256() -> None:
    signature = signature_for(**BASE)
    assert signature == signature_for(**BASE)
    assert len(signature) == 64 and int(signature, 16) >= 0


@pytest.mark.parametrize("field, value", [
    ("secret_key", "t" * 40), ("method", "GET"), ("path", "/graphql?x=1"), ("host", "127.0.0.1:8081"),
    ("content_type", "text/plain"), ("body", b"{}"), ("date", DATE + dt.timedelta(seconds=1)),
])
def test_signature_covers_every_part_of_the_request(field: str, value: object) -> None:
    assert signature_for(**{**BASE, field: value}) != signature_for(**BASE)


def test_method_and_content_type_are_case_insensitive() -> None:
    assert signature_for(**{**BASE, "method": "post"}) == signature_for(**BASE)
    assert signature_for(**{**BASE, "content_type": "Application/JSON"}) == signature_for(**BASE)


def test_sign_request_headers_round_trip_through_parse_authorization() -> None:
    headers = sign_request(access_key="AKIAEXAMPLE000000000", secret_key="s" * 40, method="POST",
                           path="/graphql", host="127.0.0.1:8080", body=BASE["body"], date=DATE)
    access_key, signature = parse_authorization(headers["Authorization"])
    assert access_key == "AKIAEXAMPLE000000000"
    assert signature == signature_for(**BASE)
    assert headers["X-BackendAI-Date"] == DATE.isoformat()
    assert headers["X-BackendAI-Version"] == API_VERSION
    assert headers["Content-Type"] == "application/json"


def test_sign_request_keeps_microseconds_so_the_header_date_is_the_signed_one() -> None:
    date = DATE.replace(microsecond=123456)
    headers = sign_request(access_key="AK", secret_key="s", method="GET", path="/", host="h", body=b"", date=date)
    assert headers["X-BackendAI-Date"] == date.isoformat()
    signature = parse_authorization(headers["Authorization"])[1]
    assert signature == signature_for(secret_key="s", method="GET", path="/", date=dt.datetime.fromisoformat(
        headers["X-BackendAI-Date"]), host="h", content_type="application/json", body=b"")


def test_identical_requests_signed_in_a_row_never_share_a_signature() -> None:
    """The gateway accepts a signature once: a client that sends the same request twice (a poll, a
    retry) must sign it twice, differently, even within one clock tick."""
    signed = [sign_request(access_key="AK", secret_key="s", method="POST", path="/graphql", host="h", body=b"{}")
              for _ in range(200)]
    assert len({headers["Authorization"] for headers in signed}) == 200
    dates = [dt.datetime.fromisoformat(headers["X-BackendAI-Date"]) for headers in signed]
    assert dates == sorted(dates)


@pytest.mark.parametrize("header, fragment", [
    ("Bearer abc", "malformed Authorization header"),
    ("BackendAI signMethod=HMAC-SHA256, credential=AKIA", "malformed"),
    ("BackendAI signMethod=HMAC-SHA256, credential=AKIA:XYZ", "malformed"),
    ("BackendAI signMethod=HMAC-MD5, credential=AKIA:abcdef", "unsupported signMethod HMAC-MD5"),
])
def test_parse_authorization_refuses_malformed_headers(header: str, fragment: str) -> None:
    with pytest.raises(SignatureError, match=fragment):
        parse_authorization(header)
