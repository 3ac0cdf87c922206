"""The gateway's writer of tenancy events (``keypair.created``) into the shared event log."""

from __future__ import annotations

from services.common.store import BerthApplication

__all__ = ["Tenancy"]


class Tenancy(BerthApplication):
    """Records tenancy events; the aggregate id of a keypair is its access key."""
