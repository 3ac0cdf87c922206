"""Builds the decision context (time, actor, correlation) at the edge of a service."""

from __future__ import annotations

import uuid

from contracts.envelope import Metadata, utc_now
from domain.emitting import Context

__all__ = ["make_context"]


def make_context(actor: str, *, correlation_id: str | None = None, causation_id: str | None = None) -> Context:
    """Returns a context stamped with the current UTC time."""
    return Context(
        now=utc_now(),
        metadata=Metadata(
            actor=actor,
            correlation_id=correlation_id or uuid.uuid4().hex,
            causation_id=causation_id,
        ),
    )
