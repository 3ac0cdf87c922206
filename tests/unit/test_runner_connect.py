"""The kernel runner's ``connect`` op: a runner connection becomes a connection to an app on the kernel's
loopback (run here as a local process, so the loopback is the host's)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.waiting import wait_for
from tests.unit.test_runner import RunnerClient, start_runner


@pytest.fixture
def runner_path(tmp_path: Path) -> Iterator[Path]:
    proc, path = start_runner(tmp_path)
    yield path
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def echo_app() -> Iterator[tuple[int, list[bytes]]]:
    """An app on 127.0.0.1 that answers each line upper-cased and records what it received until EOF."""
    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                    conn.sendall(chunk.upper())
                received.append(data)

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], received
    server.close()


def _connect(path: Path, message: dict) -> tuple[RunnerClient, dict]:
    client = RunnerClient(path)
    client.send(message)
    return client, client.receive()


def test_connect_carries_bytes_both_ways_and_ends_when_the_agent_closes(runner_path: Path, echo_app) -> None:
    port, received = echo_app
    client, answer = _connect(runner_path, {"op": "connect", "port": port})
    assert answer == {"op": "connected", "port": port}
    payload = b"hello app\n" + bytes(range(256)) * 1024  # 256 KiB, every byte value: carried unframed
    echoed: list[bytes] = []
    reader = threading.Thread(target=lambda: echoed.append(_read_exactly(client.sock, len(payload))))
    reader.start()
    client.sock.sendall(payload)
    reader.join(timeout=30)
    assert echoed == [payload.upper()]
    client.sock.shutdown(socket.SHUT_WR)  # the agent ends: the runner ends the app's connection too
    assert client.sock.recv(1) == b""
    wait_for(lambda: received, timeout=10, message="the app's connection was not ended")
    assert received == [payload]
    client.close()


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(65536)
        assert chunk, "the tunnel ended early"
        data += chunk
    return data


def test_connect_to_a_port_nothing_listens_on_is_an_error_and_the_runner_serves_on(runner_path: Path) -> None:
    spare = socket.socket()
    spare.bind(("127.0.0.1", 0))
    port = spare.getsockname()[1]
    spare.close()  # bound, never listening: refused
    client, answer = _connect(runner_path, {"op": "connect", "port": port})
    assert answer["kind"] == "error" and f"nothing accepts connections on port {port}" in answer["message"]
    client.send({"op": "ping"})
    assert client.receive()["op"] == "pong"
    client.close()


@pytest.mark.parametrize("port", [0, 65536, "80", None, True, -1])
def test_connect_needs_a_tcp_port(runner_path: Path, port: object) -> None:
    client, answer = _connect(runner_path, {"op": "connect", "port": port})
    assert answer == {"kind": "error", "message": "connect needs a port (an integer from 1 to 65535)"}
    client.close()
