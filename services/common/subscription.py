"""A consumer's declaration (``Subscription``): the classes of the messages it takes and the handler of each, its
stream, and how it is run (durable or followed, batched, in lanes); ``flow.consume`` and ``flow.follow`` run it."""

from __future__ import annotations

import string
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from contracts.envelope import Event
from contracts.reports import Report
from contracts.storage_reports import StorageReport
from contracts.subjects import event_filters, report_filters

__all__ = ["BACKOFF", "Subscription"]

BACKOFF = (0.1, 0.5, 2.0, 5.0)
"""Delays before the next try of a message whose handler failed (not for a dependency outage)."""

@dataclass(frozen=True)
class Subscription:
    """One consumer of a service: the classes of the messages it takes, the handler of each,
    and the classes of its contexts it deliberately leaves out (``ignored``: not subscribed)."""

    name: str
    """The durable consumer's name (a ``str.format`` template of the ids given at start), or
    the name of an ordered one (logs, AsyncAPI)."""
    stream: str
    routes: Mapping[type, Callable[..., Any]]
    ignored: tuple[type, ...] = ()
    durable: bool = False
    batch: int = 1
    """> 1: fetches up to ``batch`` messages and hands them all to the one handler of the routes (or,
    with ``concurrent_by``, each to its own handler in its lane, at most ``batch`` held at once)."""
    concurrent_by: Callable[[Any], Hashable] | None = None
    """With ``batch`` > 1: the key of a decoded message, its lane (``services.common.lanes``): messages
    with different keys are handled concurrently, those with the same key one after the other in
    stream order; the next fetch waits only for room, never for a slow lane."""
    aggregate: str = "*"
    """The aggregate id of the events taken (a template such as ``{agent_id}``); ``*``: all."""
    max_deliver: int = 5
    """Tries of a message whose handler fails (not counting tries while a dependency is away)
    before it is dead-lettered."""
    backoff: tuple[float, ...] = BACKOFF
    description: str = ""
    named: bool = False
    """Creates the consumer under its name with its one filter in the API subject
    (``$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>``), so that a permission can allow this
    consumer and no other (an agent's identity: ``services.common.bus_identities``)."""
    reports: bool = field(init=False)

    def __post_init__(self) -> None:
        kinds = {issubclass(cls, (Report, StorageReport)) for cls in self.routes}
        if len(kinds) != 1 or not all(issubclass(cls, (Event, Report, StorageReport)) for cls in self.routes):
            raise ValueError(f"{self.name}: routes must be all events or all reports")
        object.__setattr__(self, "reports", kinds == {True})
        if set(self.routes) & set(self.ignored):
            raise ValueError(f"{self.name}: a class both routed and ignored")
        if self.batch > 1 and self.concurrent_by is None and len(set(self.routes.values())) != 1:
            raise ValueError(f"{self.name}: a batched subscription has one handler (or a concurrent_by key)")
        if self.concurrent_by is not None and self.batch < 2:
            raise ValueError(f"{self.name}: concurrent_by needs a batch of at least 2")
        if self.batch > 1 and not self.durable:
            raise ValueError(f"{self.name}: only a durable subscription is batched")
        if self.named and len(self.filters(**dict.fromkeys(_template_ids(self.aggregate), "x"))) != 1:
            raise ValueError(f"{self.name}: a named consumer takes one filter subject (route its whole aggregate)")

    def consumer_name(self, **ids: str) -> str:
        return self.name.format(**ids)

    def filters(self, **ids: str) -> tuple[str, ...]:
        """Returns the filter subjects of the consumer, derived from the routed classes."""
        if self.reports:
            return report_filters(self.routes)
        return event_filters(self.routes, self.aggregate.format(**ids))


def _template_ids(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]
