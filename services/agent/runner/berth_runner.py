"""Berth kernel runner: runs code for the agent, in or next to a kernel, over a Unix socket.

Stdlib only (Python >= 3.9), no imports from Berth, so any image with ``python3`` runs it:

    python3 berth_runner.py --socket /opt/berth/io/runner.sock [--output-rate BYTES]

This is its entry point, and it **listens first**: with only the interpreter's own modules
(``os``, ``sys``, ``_socket``, ``_signal``: no import of ``socket``, ``json``, ``subprocess``, ...)
it binds the socket, listens and renames it into place, and only then loads the server
(``berth_server.py``, next to this file: the protocol, the worker, the accept loop). The agent
reports a kernel RUNNING once the socket is there, so the server's imports (≈40 ms of a one-CPU
kernel's start, more on a busy node) overlap that report's way to the user instead of delaying
it; a client that connects meanwhile waits in the listen backlog and is served once they are done.
"""

import os
import sys

try:
    import _signal as _signals
    import _socket as _sockets
except ImportError:  # an interpreter without CPython's private modules: the public ones do
    import signal as _signals  # type: ignore[no-redef]
    import socket as _sockets  # type: ignore[no-redef]

USAGE = "usage: berth_runner.py --socket PATH [--output-rate BYTES] [--cgroup DIR]"
BACKLOG = 16


def parse_args(argv):
    """Returns ``(socket_path, output_rate or None, cgroup or None)`` from ``--socket PATH
    [--output-rate BYTES] [--cgroup DIR]`` (also ``--name=value``; ``--output-rate``: bytes per second a
    run's output streams at; ``--cgroup``: the kernel's cgroup
    filesystem, read for its memory limit and OOM kills); exits 2 with the usage on anything else,
    0 on ``-h``/``--help``."""
    values = {}
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg in ("-h", "--help"):
            print(USAGE)
            sys.exit(0)
        name, eq, value = arg.partition("=")
        if name not in ("--socket", "--output-rate", "--cgroup"):
            _usage_error(f"unknown argument {arg!r}")
        if not eq:
            if not rest:
                _usage_error(f"{name} needs a value")
            value = rest.pop(0)
        values[name] = value
    if not values.get("--socket"):
        _usage_error("--socket is required")
    output_rate = values.get("--output-rate")
    if output_rate is not None:
        if not output_rate.isdigit() or int(output_rate) == 0:
            _usage_error(f"--output-rate must be a positive number of bytes (per second), got {output_rate!r}")
        output_rate = int(output_rate)
    return values["--socket"], output_rate, values.get("--cgroup")


def _usage_error(message):
    print(f"{USAGE}\nberth_runner.py: error: {message}", file=sys.stderr)
    sys.exit(2)


STOPS = []
"""The stop signals received (SIGTERM, SIGINT), in order. The handler only records them: an exception
raised in a handler surfaces wherever the main thread happens to be, and where that is a finalizer or
a weakref callback (an import's module lock has one) Python prints it and drops it; the signal would
be lost. The server acts on the record (``berth_server.serve``), which also covers a signal received
before it started."""


def _stop(signum, frame):  # noqa: ARG001 - signal handler signature
    STOPS.append(signum)


def bind_unix(sock, path):
    """Binds ``sock`` to ``path``, through ``/proc/self/fd`` when the path is too long for AF_UNIX."""
    if len(path.encode()) < 100:
        sock.bind(path)
        return
    dir_fd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        sock.bind(f"/proc/self/fd/{dir_fd}/{os.path.basename(path)}")
    finally:
        os.close(dir_fd)


def listen(socket_path):
    """Returns a socket listening on ``socket_path`` (mode 0600: its own user and a root agent may
    connect), which appears there only once it accepts connections (bound under a temporary name,
    then renamed) and its "listening" line is in the log."""
    os.makedirs(os.path.dirname(os.path.abspath(socket_path)), exist_ok=True)
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    server = _sockets.socket(_sockets.AF_UNIX, _sockets.SOCK_STREAM)
    temp = socket_path + ".tmp"
    if os.path.exists(temp):
        os.unlink(temp)
    bind_unix(server, temp)
    os.chmod(temp, 0o600)
    server.listen(BACKLOG)
    # Logged before the socket appears: a kernel seen started (its socket there) has said so in its log.
    sys.stderr.write(f"berth runner {os.getpid()} listening on {socket_path}\n")
    sys.stderr.flush()
    os.rename(temp, socket_path)
    return server


def main(argv=None):
    socket_path, output_rate, cgroup = parse_args(sys.argv[1:] if argv is None else argv)
    _signals.signal(_signals.SIGTERM, _stop)  # from the moment the socket exists: exit 128+signal, socket removed
    _signals.signal(_signals.SIGINT, _stop)
    server = listen(socket_path)
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        if here not in sys.path:  # ``python3 -I`` does not put the script's directory first
            sys.path.insert(0, here)
        import berth_server  # noqa: PLC0415 - loaded once the socket accepts (see the module's doc)

        berth_server.serve(server, socket_path, output_rate, STOPS, cgroup)
    finally:
        try:
            os.unlink(socket_path)
        except OSError:
            pass


if __name__ == "__main__":
    main()
