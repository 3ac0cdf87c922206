"""Connections to apps inside kernels (DESIGN.md §12), between the gateway and an agent: not events.

The gateway asks the kernel's agent on ``app.agent.<agent_id>`` with an ``AppTunnelRequest`` (kernel, port);
the agent answers an ``AppTunnelOffer``: where its tunnel listener is and a one-time ``nonce`` (valid
``OFFER_TTL`` seconds). The gateway then connects there over TCP, sends the nonce and a newline, and reads one
line: ``ok`` and from then on the connection carries the app's bytes both ways, or the reason it was refused.
The nonce travels only over the authenticated bus: whoever else reaches the listener has nothing to send.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from contracts.subjects import check_token

__all__ = [
    "AGENT_ANSWER_WITHIN",
    "APP_SUBJECTS",
    "MAX_ANSWER_LINE",
    "MAX_NONCE_LINE",
    "RUNNER_ANSWER_WITHIN",
    "OFFER_TTL",
    "TUNNEL_OK",
    "AppTunnelOffer",
    "AppTunnelRequest",
    "app_subject",
    "check_app_port",
    "printable_reason",
]

APP_SUBJECTS = "app.agent.*"
"""Every agent's app subject (the gateway asks any agent)."""
OFFER_TTL = 10.0
"""Seconds an offer's nonce may be used in, once."""
RUNNER_ANSWER_WITHIN = 10.0
"""Seconds the agent waits for its kernel's runner to say whether it connected to the app's port."""
AGENT_ANSWER_WITHIN = 5.0 + RUNNER_ANSWER_WITHIN
"""Seconds within which the agent answers a connection that sent its nonce (``ok``, or why not): reaching the
kernel's runner (5 s at most) and its answer."""
MAX_ANSWER_LINE = 1024
"""Bytes of the agent's answer line, at most (its reasons are cut to 500 printable characters)."""
MAX_NONCE_LINE = 128
"""Bytes of the line a tunnel connection starts with, at most."""
TUNNEL_OK = b"ok\n"
"""The agent's answer to a nonce it took: the app's bytes follow."""


class AppTunnelRequest(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    kernel_id: str
    port: int
    """The port the app listens on inside the kernel (its own loopback)."""


class AppTunnelOffer(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An agent's answer; the gateway decodes it with these bounds (an agent, too, may be hostile): the
    nonce is what the agent's ``secrets.token_urlsafe`` makes, and the host one name or address, so the
    line the gateway sends is the nonce and nothing else."""

    ok: bool
    error: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    host: Annotated[str, msgspec.Meta(max_length=253, pattern=r"^[A-Za-z0-9._:%-]*$")] = ""
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    nonce: Annotated[str, msgspec.Meta(max_length=MAX_NONCE_LINE - 1, pattern=r"^[A-Za-z0-9_-]*$")] = ""


def printable_reason(text: str) -> str:
    """``text`` cut to 500 characters, each unprintable one a space: a reason told across the tunnel's hops
    (from a kernel's runner, which may say anything, through the agent to a user)."""
    return "".join(ch if ch.isprintable() else " " for ch in text[:500]).strip()


def check_app_port(port: int) -> int:
    """Returns ``port`` when it is a TCP port (1-65535); else raises ValueError saying so."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an integer from 1 to 65535, not {port!r}")
    return port


def app_subject(agent_id: str) -> str:
    """Returns ``app.agent.<agent_id>``, where an agent takes requests for connections to its kernels' apps."""
    return f"app.agent.{check_token(agent_id, 'agent id')}"
