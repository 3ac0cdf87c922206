"""What `berth app` and the gateway's `/apps/tunnel` take (the query string, the local bind address), and what a refused
handshake logs."""

from __future__ import annotations

import logging

import click
import pytest

from services.cli.app_cmd import _bind_address
from services.gateway.apps.tunnel import _request_of
from services.gateway.asgi import DeniedHandshakeFilter
from services.gateway.errors import BAD_INPUT, GatewayError


@pytest.mark.parametrize(("query", "expected"), [
    (b"session=train&port=8888", ("train", 8888)),
    (b"port=1&session=3f9a", ("3f9a", 1)),
    (b"session=a.b_c-d&port=65535", ("a.b_c-d", 65535)),
])
def test_the_tunnel_takes_a_session_and_a_port(query: bytes, expected: tuple[str, int]) -> None:
    assert _request_of({"query_string": query}) == expected


@pytest.mark.parametrize(("query", "says"), [
    (b"", "one of each"),
    (b"session=a", "one of each"),
    (b"session=a&session=b&port=1", "one of each"),
    (b"session=a&port=1&port=2", "one of each"),
    (b"session=a&port=http", "port must be an integer from 1 to 65535, not 'http'"),
    (b"session=a&port=0", "from 1 to 65535"),
    (b"session=a&port=70000", "from 1 to 65535"),
    (b"session=a%20b&port=1", "session id"),
    (b"session=" + b"x" * 200 + b"&port=1", "session id"),
])
def test_the_tunnel_refuses_anything_else_as_bad_input(query: bytes, says: str) -> None:
    with pytest.raises(GatewayError) as refused:
        _request_of({"query_string": query})
    assert refused.value.code == BAD_INPUT and says in str(refused.value)


@pytest.mark.parametrize(("bind", "expected"), [
    ("127.0.0.1:0", ("127.0.0.1", 0)),
    ("8080", ("127.0.0.1", 8080)),
    (":8080", ("127.0.0.1", 8080)),
    ("[::1]:9000", ("::1", 9000)),
    ("0.0.0.0:80", ("0.0.0.0", 80)),
])
def test_berth_app_binds_where_it_is_told(bind: str, expected: tuple[str, int]) -> None:
    assert _bind_address(bind) == expected


@pytest.mark.parametrize("bind", ["localhost:http", "127.0.0.1:65536", "127.0.0.1:-1", ""])
def test_berth_app_refuses_a_bind_address_it_cannot_use(bind: str) -> None:
    with pytest.raises(click.BadParameter):
        _bind_address(bind)


def test_a_refused_handshake_is_not_logged_as_an_error_and_other_errors_are() -> None:
    """uvicorn's websockets-sansio protocol logs an error after every handshake refused with an HTTP response;
    each refused tunnel (a port nothing listens on yet) would have logged one, as many as a client liked."""
    denied = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1,
                               "ASGI callable returned without completing handshake.", None, None)
    other = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application\n", None, None)
    assert DeniedHandshakeFilter().filter(denied) is False
    assert DeniedHandshakeFilter().filter(other) is True
