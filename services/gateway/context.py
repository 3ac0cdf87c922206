"""The per-request context handed to every resolver."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import strawberry

from contracts.tenancy import KeypairLimits
from services.gateway.auth.principal import Principal
from services.gateway.errors import UNAUTHENTICATED, GatewayError
from services.gateway.resources import Resources

__all__ = ["GatewayContext", "Info", "caller"]


@dataclass
class GatewayContext:
    """The request, the gateway's resources and the authenticated caller (None until authenticated)."""

    request: Any
    response: Any
    resources: Resources
    principal: Principal | None = None
    connection_params: dict[str, Any] | None = None
    limits: KeypairLimits | None = None
    """The caller's policy limits as a websocket operation's rate limit just read them (``ws_operations``): the
    operation's subscription slot takes them rather than reading them again (``subscription_guard``)."""


Info = strawberry.Info[GatewayContext, None]


def caller(info: Info) -> Principal:
    """Returns the authenticated caller; raises UNAUTHENTICATED when there is none."""
    principal = info.context.principal
    if principal is None:
        raise GatewayError(UNAUTHENTICATED, "not authenticated")
    return principal
