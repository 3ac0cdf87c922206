"""Connections to apps inside kernels (DESIGN.md §12), between the gateway and an agent: not events.

The gateway asks the kernel's agent on ``app.agent.<agent_id>`` with an ``AppTunnelRequest`` (kernel, port);
the agent answers an ``AppTunnelOffer``: where its tunnel listener is and a one-time ``nonce`` (valid
``OFFER_TTL`` seconds). The gateway then connects there over TCP, sends the nonce and a newline, and reads one
line: ``ok`` and from then on the connection carries the app's bytes both ways, or the reason it was refused.
The nonce travels only over the authenticated bus: whoever else reaches the listener has nothing to send.
"""

from __future__ import annotations

import msgspec

from contracts.subjects import check_token

__all__ = [
    "APP_SUBJECTS",
    "MAX_NONCE_LINE",
    "OFFER_TTL",
    "TUNNEL_OK",
    "AppTunnelOffer",
    "AppTunnelRequest",
    "app_subject",
    "check_app_port",
]

APP_SUBJECTS = "app.agent.*"
"""Every agent's app subject (the gateway asks any agent)."""
OFFER_TTL = 10.0
"""Seconds an offer's nonce may be used in, once."""
MAX_NONCE_LINE = 128
"""Bytes of the line a tunnel connection starts with, at most."""
TUNNEL_OK = b"ok\n"
"""The agent's answer to a nonce it took: the app's bytes follow."""


class AppTunnelRequest(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    kernel_id: str
    port: int
    """The port the app listens on inside the kernel (its own loopback)."""


class AppTunnelOffer(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    ok: bool
    error: str | None = None
    host: str = ""
    port: int = 0
    nonce: str = ""


def check_app_port(port: int) -> int:
    """Returns ``port`` when it is a TCP port (1-65535); else raises ValueError saying so."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an integer from 1 to 65535, not {port!r}")
    return port


def app_subject(agent_id: str) -> str:
    """Returns ``app.agent.<agent_id>``, where an agent takes requests for connections to its kernels' apps."""
    return f"app.agent.{check_token(agent_id, 'agent id')}"
