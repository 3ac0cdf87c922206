"""How a ``berth`` command runs its async body: ``run_async`` turns API and connection errors into a
one-line message and exit status 1 (a local file's error names the file; a closed stdout, `| head`, ends
quietly). Commands import it from here; ``main`` only composes them."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import select
import signal
import sys
from typing import Any, Awaitable, Callable, Iterator

import click
import httpx

from services.sdk.client import BerthAPIError
from services.sdk.instance import InstanceNotFoundError

__all__ = ["on_signals", "run_async"]


AUTH_HINT = ("\n(the gateway answers every authentication failure the same way: check the keypair — "
             "BERTH_ACCESS_KEY / BERTH_SECRET_KEY or the instance file — is active, and that this machine's clock "
             "is within 15 minutes of the gateway's; the gateway's log says which)")


def run_async(func: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """Wraps an async command: runs it and turns API errors into a clear message and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return asyncio.run(func(*args, **kwargs))
        except BerthAPIError as exc:
            hint = AUTH_HINT if exc.code == "UNAUTHENTICATED" else ""
            raise click.ClickException(f"{exc.code}: {exc.message}{hint}") from None
        except InstanceNotFoundError as exc:
            raise click.ClickException(str(exc)) from None
        except BrokenPipeError:
            if _stdout_closed():  # `berth ps -o json | head`: click's main ends quietly, exit status 1
                raise
            raise click.ClickException("cannot reach Berth: its connection broke (Broken pipe)") from None
        except OSError as exc:
            if exc.filename is not None:  # a local file (`download --to`, an upload's source), not the connection
                raise click.ClickException(f"{exc.filename}: {exc.strerror or exc}") from None
            raise click.ClickException(f"cannot reach Berth: {exc}") from None
        except httpx.TimeoutException as exc:
            raise click.ClickException(f"Berth did not answer{_at(exc)} in time ({type(exc).__name__}): it may be "
                                       "overloaded or stopped; try again") from None
        except httpx.TransportError as exc:  # an HTTP request's connection: not an OSError
            raise click.ClickException(
                f"cannot reach Berth{_at(exc)}: {exc or type(exc).__name__} (is it running? `ops/up` starts it; "
                "BERTH_ENDPOINT or the instance file says where it is)") from None

    return wrapper


def _stdout_closed() -> bool:
    """True when nothing reads our stdout any more (a pipe whose reader ended): a write failing with
    EPIPE there is the reader's choice, not a lost connection to Berth."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll here, or stdout is not a file
        return False


def _at(exc: httpx.TransportError) -> str:
    """`` at URL`` of the request that failed, when it is known."""
    try:
        return f" at {exc.request.url}"
    except RuntimeError:  # raised without a request
        return ""


@contextlib.contextmanager
def on_signals(signals: tuple[signal.Signals, ...], handler: Callable[[int], None]) -> Iterator[None]:
    """Within the block, runs ``handler(signum)`` on each of ``signals`` instead of its usual effect (Ctrl-C's
    KeyboardInterrupt, SIGTERM's end); restores what each did after. Where the loop cannot take signals (off the
    main thread), they stay as they were."""
    loop = asyncio.get_running_loop()
    installed: list[tuple[signal.Signals, Any]] = []
    for sig in signals:
        previous = signal.getsignal(sig)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, handler, int(sig))
            installed.append((sig, previous))
    try:
        yield
    finally:
        for sig, previous in installed:
            loop.remove_signal_handler(sig)
            signal.signal(sig, previous)
