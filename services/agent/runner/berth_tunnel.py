"""Berth kernel runner: a connection to an app inside the kernel (op ``connect``).

Stdlib only. The agent asks ``{"op":"connect","port":N}`` on a connection of its own; the runner
connects to ``127.0.0.1:N`` (or ``[::1]:N``) in the kernel's own network namespace, answers
``{"op":"connected","port":N}`` (or an error line) and from then on the connection carries the
app's bytes both ways, unframed, until either side closes.
"""

from __future__ import annotations

import socket
import threading

CONNECT_TIMEOUT = 5.0
CHUNK = 64 * 1024
LOOPBACKS = (("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6))


def check_port(request: dict):
    """Returns the request's port, or an error message."""
    port = request.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        return None, "connect needs a port (an integer from 1 to 65535)"
    return port, None


def open_app(port: int) -> socket.socket:
    """Returns a connection to the app listening on the kernel's loopback at ``port`` (IPv4 first);
    raises OSError naming the port when nothing listens there."""
    errors = []
    for host, family in LOOPBACKS:
        app = socket.socket(family, socket.SOCK_STREAM)
        app.settimeout(CONNECT_TIMEOUT)
        try:
            app.connect((host, port))
        except OSError as exc:
            app.close()
            errors.append(f"{host}: {exc.strerror or exc}")
            continue
        app.settimeout(None)
        return app
    raise OSError(f"nothing accepts connections on port {port} in the kernel ({'; '.join(errors)})")


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copies ``source`` to ``sink`` until ``source`` ends, then ends ``sink``'s writing side."""
    try:
        while True:
            data = source.recv(CHUNK)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def splice(conn: socket.socket, app: socket.socket) -> None:
    """Carries bytes between the agent's connection and the app's until both directions ended."""
    upstream = threading.Thread(target=_pump, args=(conn, app), daemon=True)
    upstream.start()
    _pump(app, conn)
    upstream.join()
    app.close()
