"""What `berth app` and the gateway's `/apps/tunnel` take (the query string, the local bind address, an agent's
offer), what a refused handshake logs, and the tunnels' TCP keepalive."""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket

import click
import msgspec
import pytest

from contracts.app_tunnels import AppTunnelOffer, printable_reason
from services.cli.app_cmd import _bind_address
from services.common.pumps import KEEPALIVE_IDLE, keep_alive
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
    other = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application\n", None,
                              None)
    assert DeniedHandshakeFilter().filter(denied) is False
    assert DeniedHandshakeFilter().filter(other) is True


@pytest.mark.parametrize("offer", [
    b'{"ok":true,"host":"127.0.0.1","port":1,"nonce":"abc\\r\\nGET / HTTP/1.1"}',  # a line of its choice sent on
    b'{"ok":true,"host":"127.0.0.1","port":1,"nonce":"' + b"n" * 200 + b'"}',
    b'{"ok":true,"host":"evil host\\n","port":1,"nonce":"abc"}',
    b'{"ok":true,"host":"127.0.0.1","port":70000,"nonce":"abc"}',
    b'{"ok":false,"error":"' + b"e" * 5000 + b'"}',
])
def test_the_gateway_takes_from_an_agent_only_an_offer_within_bounds(offer: bytes) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(offer, type=AppTunnelOffer)


def test_an_offer_as_the_agent_makes_it_is_taken() -> None:
    offer = AppTunnelOffer(ok=True, host="node-1.example", port=40001, nonce=secrets.token_urlsafe(32))
    assert msgspec.json.decode(msgspec.json.encode(offer), type=AppTunnelOffer) == offer


def test_a_reason_told_across_the_hops_is_one_printable_line_of_bounded_length() -> None:
    assert printable_reason("refused\r\n\x1b[31mred\x00") == "refused   [31mred"
    assert len(printable_reason("x" * 10_000)) == 500


async def test_keep_alive_probes_a_silent_tcp_peer_and_leaves_unix_sockets_alone(tmp_path) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    _, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
    keep_alive(writer)
    sock = writer.get_extra_info("socket")
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE_IDLE
    writer.close()
    server.close()
    unix = await asyncio.start_unix_server(lambda r, w: None, str(tmp_path / "s"))
    _, unix_writer = await asyncio.open_unix_connection(str(tmp_path / "s"))
    keep_alive(unix_writer)  # nothing to set, nothing raised
    unix_writer.close()
    unix.close()
