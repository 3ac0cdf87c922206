"""``berth app SESSION PORT``: an app inside a session (Jupyter, a web server, anything on a TCP port of its main
kernel) reached on a local port, each local connection carried over its own websocket to the gateway."""

from __future__ import annotations

import asyncio
import logging
import time

import click

from contracts.status import LIVE_SESSION_STATUSES
from services.cli import queries as q
from services.cli.connection import connect_client
from services.cli.exec_cmd import stream_execution
from services.cli.running import run_async
from services.sdk.app_tunnel import forward_connection, open_app_tunnel
from services.sdk.client import BerthAPIError, BerthClient

__all__ = ["app", "seconds"]

log = logging.getLogger(__name__)
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _bind_address(bind: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``PORT`` (on 127.0.0.1) as host and port."""
    host, _, port = bind.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise click.BadParameter(f"{bind!r}: use HOST:PORT or PORT (0: a free port)", param_hint="--bind") from None
    if not 0 <= number <= 65535:
        raise click.BadParameter(f"port {number} is not from 0 to 65535", param_hint="--bind")
    return host, number


async def _check_session(client: BerthClient, session: str) -> tuple[str, str]:
    """Returns the session's id and name (or id); raises BerthAPIError when it is not found or not running."""
    found = (await client.execute(q.SESSION_BRIEF, {"id": session}))["session"]
    if found is None:
        raise BerthAPIError("NOT_FOUND", f"no session {session!r} of yours (berth ps lists them)")
    if found["status"] != "RUNNING":
        raise BerthAPIError("CONFLICT", f"session {found['name'] or found['id']} is {found['status']}, not RUNNING: "
                                        "its apps are reached while it runs")
    return str(found["id"]), str(found["name"] or found["id"])


async def _until_ended(client: BerthClient, session_id: str) -> str:
    """Returns the session's status once it ended (its apps are gone with it)."""
    stream = client.subscribe(q.SESSION_STATUS, {"id": session_id})
    try:
        async for item in stream:
            status = str(item["sessionStatus"]["status"])
            if status not in LIVE_SESSION_STATUSES:
                return status
    finally:
        await stream.aclose()
    raise BerthAPIError("CONNECTION_CLOSED", "the session's status stream ended")


async def _accepts(client: BerthClient, session_id: str, port: int) -> bool:
    """Whether an app in the session accepts connections on ``port`` now (one connection opened and closed)."""
    try:
        await (await open_app_tunnel(client, session_id, port)).close()
    except BerthAPIError as exc:
        if exc.code == "CONFLICT" and "nothing accepts connections" in exc.message:
            return False
        raise
    return True


async def _started(client: BerthClient, session_id: str, name: str, port: int, command: str, timeout: float) -> None:
    """Starts ``command`` in the background in the session unless something accepts connections on ``port``
    already; then waits until something does, at most ``timeout`` seconds."""
    if await _accepts(client, session_id, port):
        click.echo(f"berth: port {port} of {name} accepts connections already: not starting the command", err=True)
        return
    if await stream_execution(client, session_id, command, "batch", detach=True) != 0:
        raise click.ClickException(f"the command did not start in {name}")
    click.echo(f"berth: waiting for port {port} to accept connections (at most {seconds(timeout)})", err=True)
    started = time.monotonic()
    while not await _accepts(client, session_id, port):
        waited = time.monotonic() - started
        if waited > timeout:
            raise click.ClickException(f"nothing accepts connections on port {port} of {name} after "
                                       f"{seconds(waited)} (--start-timeout {timeout:g}): "
                                       f"`berth logs {name}` shows what the command said")
        await asyncio.sleep(0.5)


def seconds(value: float) -> str:
    """A duration for people: ``0.4 s``, ``3 s``, ``120 s`` (whole seconds from 10 on); ``{:.0f}`` said "after
    0 s" of a wait under a second, and rounded ``--start-timeout 0.4`` to "at most 0 s"."""
    return f"{value:.0f} s" if value >= 10 else f"{value:.2g} s"


@run_async
async def _forward(session: str, port: int, host: str, local_port: int, start: str | None, timeout: float) -> None:
    async with connect_client() as client:

        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                tunnel = await open_app_tunnel(client, session_id, port)
            except (BerthAPIError, OSError, asyncio.TimeoutError) as exc:
                click.echo(f"berth: a connection to port {port} of {name} was refused: {exc}", err=True)
                writer.close()
                return
            await forward_connection(tunnel, reader, writer)

        try:  # bound first, accepting once the session is known: a local address in use says so, not the gateway
            server = await asyncio.start_server(on_connection, host, local_port, start_serving=False)
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{local_port}: {exc.strerror or exc}") from None
        async with server:
            session_id, name = await _check_session(client, session)
            if start is not None:
                await _started(client, session_id, name, port, start, timeout)
            await server.start_serving()
            bound = server.sockets[0].getsockname()
            shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
            click.echo(f"berth: port {port} of session {name} is at {shown}:{bound[1]} (http://{shown}:{bound[1]}/ "
                       "for a web app); Ctrl-C stops")
            try:
                status = await _until_ended(client, session_id)
            except BerthAPIError as exc:  # the gateway restarted, say: forward on, the connections say what fails
                log.warning("no longer following the session's status (%s); forwarding on", exc)
                await server.serve_forever()
        raise click.ClickException(f"session {name} ended ({status}): its apps are gone with it")


@click.command("app")
@click.argument("session", metavar="SESSION")
@click.argument("port", type=click.IntRange(1, 65535))
@click.option("--bind", default="127.0.0.1:0", show_default=True,
              help="Local HOST:PORT (or PORT) to listen on; port 0 is a free one, printed.")
@click.option("--start", metavar="COMMAND",
              help="Unless something accepts connections on PORT already, start COMMAND in the session first (a shell "
                   "command, in the background as `berth exec --detach`: its output goes to `berth logs`) and wait "
                   "until it does.")
@click.option("--start-timeout", type=click.FloatRange(min=0), default=120.0, show_default=True,
              help="Seconds --start's COMMAND has to accept connections on PORT.")
def app(session: str, port: int, bind: str, start: str | None, start_timeout: float) -> None:
    """Reach PORT of a running session's main kernel (Jupyter, TensorBoard, any TCP app listening on the
    kernel's localhost) on a local port, until Ctrl-C or the session's end.

    Each connection to the local port is carried over its own authenticated websocket to the gateway and
    on to the app; the session's idle timeout counts the traffic as activity. Anyone who can connect to
    the local port reaches the app as you: keep the default loopback address unless you mean it.

    Jupyter, in one command: berth app SESSION 8888 --start "jupyter lab --ip=127.0.0.1 --port=8888 --no-browser"
    (its token is in `berth logs SESSION`).

    SESSION is an id, a unique id prefix (4+ characters) or a name."""
    host, local_port = _bind_address(bind)
    if host not in _LOOPBACK:
        click.echo(f"berth: listening on {host}: whoever reaches it reaches the app as you", err=True)
    try:
        _forward(session, port, host, local_port, start, start_timeout)
    except KeyboardInterrupt:
        pass
