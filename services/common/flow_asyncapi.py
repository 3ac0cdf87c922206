"""The AsyncAPI document of the event flow, generated from the services' ``Subscription`` tables.

Every stream (``bus.STREAMS``), every subject (one channel per event and report type, with
its aggregate or agent id as a parameter, plus the dead letters), every message schema
(``msgspec.json.schema_components`` of the contract classes: the wire schema itself, no
pydantic) and, per service, one ``receive`` operation per subscription with its consumer,
kind, filter subjects and the classes it handles or leaves out. Deterministic: the same
tables give the same bytes (``ops/asyncapi.py`` writes it, a test checks it is current).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from contracts.catalog import ALL_EVENTS
from contracts.reports import ALL_REPORTS
from contracts.storage_reports import ALL_STORAGE_REPORTS
from contracts.subjects import (
    AGENT_REPORTS_FILTER,
    DEADLETTER_STREAM,
    EVENTS_STREAM,
    REPORTS_STREAM,
    dead_letter_subject,
    event_type_filter,
    report_subject,
    storage_report_subject,
)
from services.common.bus import STREAMS
from services.common.flow import Subscription

__all__ = ["asyncapi_document", "render"]

_REF = "#/components/schemas/{name}"
_AGENT = "__agent_id__"
_VOLUME = "__volume__"
"""A valid subject token standing for the agent id in the templates, shown as ``{agent_id}``."""


def _template(subject: str, **params: str) -> str:
    """Returns ``subject`` with the placeholder ``__<name>__`` tokens shown as ``{<name>}``."""
    for name in params:
        subject = subject.replace(f"__{name}__", f"{{{name}}}")
    return subject


def _channel_of(cls: type) -> tuple[str, dict[str, Any]]:
    """Returns the channel id and channel object of a message class."""
    name = cls.type_name()  # type: ignore[attr-defined]
    if cls in ALL_REPORTS:
        return f"report.{name}", {
            "address": _template(report_subject(_AGENT, name), agent_id=""),
            "parameters": {"agent_id": {"description": "the sending agent"}},
            "messages": {cls.__name__: {"$ref": f"#/components/messages/{cls.__name__}"}},
            "x-stream": REPORTS_STREAM,
        }
    if cls in ALL_STORAGE_REPORTS:
        return f"storage_report.{name}", {
            "address": _template(storage_report_subject(_VOLUME, name), volume=""),
            "parameters": {"volume": {"description": "the storage service's volume"}},
            "messages": {cls.__name__: {"$ref": f"#/components/messages/{cls.__name__}"}},
            "x-stream": REPORTS_STREAM,
        }
    return f"event.{name}", {
        "address": _template(event_type_filter(cls, "__aggregate_id__"), aggregate_id=""),  # type: ignore[arg-type]
        "parameters": {"aggregate_id": {"description": "the originator (aggregate) id"}},
        "messages": {cls.__name__: {"$ref": f"#/components/messages/{cls.__name__}"}},
        "x-stream": EVENTS_STREAM,
    }


def _operation(service: str, sub: Subscription) -> dict[str, Any]:
    ids = {"agent_id": _AGENT, "volume": _VOLUME}
    routed = sorted(sub.routes, key=lambda c: c.type_name())  # type: ignore[attr-defined]
    handlers = {c.type_name(): getattr(h, "__qualname__", repr(h)) for c, h in sub.routes.items()}  # type: ignore[attr-defined]
    return {
        "action": "receive",
        "summary": sub.description or sub.name,
        "channels": [{"$ref": f"#/channels/{_channel_of(c)[0]}"} for c in routed],
        "x-berth": {
            "service": service,
            "consumer": sub.name,
            "kind": "durable pull, explicit ack" if sub.durable else "ordered, from the first message",
            "stream": sub.stream,
            "filter_subjects": [_template(f, agent_id="", volume="") for f in sub.filters(**ids)],
            **({"batch": sub.batch} if sub.batch > 1 else {}),
            **({"concurrent_by": sub.concurrent_by.__name__} if sub.concurrent_by is not None else {}),
            **({"max_deliver": sub.max_deliver, "dead_letters": _dead_letters(sub, ids)} if sub.durable else {}),
            "handlers": dict(sorted(handlers.items())),
            "ignored": sorted(c.type_name() for c in sub.ignored),  # type: ignore[attr-defined]
        },
    }


def _dead_letters(sub: Subscription, ids: Mapping[str, str]) -> str:
    """Returns where ``sub``'s dead letters go: ``dlq.<consumer>``, an agent's report's ``dlq.<consumer>.<agent id>``
    (``contracts.subjects.dead_letter_subject_of``)."""
    own = _template(dead_letter_subject(sub.consumer_name(**ids)), agent_id="", volume="")
    per_agent = any(f.startswith(AGENT_REPORTS_FILTER[:-1]) for f in sub.filters(**ids))
    return f"{own}.{{agent_id}}" if per_agent else own


def asyncapi_document(flows: Mapping[str, Sequence[Subscription]]) -> dict[str, Any]:
    """Returns the AsyncAPI 3.0 document of ``flows`` (service name -> its subscriptions)."""
    classes = [*ALL_EVENTS, *ALL_REPORTS, *ALL_STORAGE_REPORTS]
    (_, components) = msgspec.json.schema_components(classes, ref_template=_REF)
    channels = dict(sorted(_channel_of(c) for c in classes))
    channels["deadletter"] = {
        "address": _template(dead_letter_subject("__consumer__"), consumer=""),
        "parameters": {"consumer": {"description": "the durable consumer that gave the message up"}},
        "description": "A message a consumer could not process, as it was, with the headers "
        "Berth-Error and Berth-Original-Subject; an agent's report on dlq.{consumer}.{agent_id} (each agent its own "
        "share of the per-subject limit).",
        "x-stream": DEADLETTER_STREAM,
    }
    operations = {
        f"{service}.{sub.name.replace('{agent_id}', 'id').replace('{volume}', 'volume')}": _operation(service, sub)
        for service, subs in sorted(flows.items())
        for sub in subs
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Berth event flow",
            "version": "1",
            "description": "Generated by ops/asyncapi.py from the services' flow tables "
            "(services/*/flow.py) and the contract classes; do not edit.",
        },
        "defaultContentType": "application/json",
        "x-streams": [
            {"name": s.name, "subjects": list(s.subjects or ()), "retention": str(getattr(s.retention, "value", s.retention))}
            for s in STREAMS
        ],
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": {
                c.__name__: {"name": c.type_name(), "payload": {"$ref": _REF.format(name=c.__name__)}}  # type: ignore[attr-defined]
                for c in sorted(classes, key=lambda c: c.__name__)
            },
            "schemas": dict(sorted(components.items())),
        },
    }


def render(document: Mapping[str, Any]) -> str:
    """Returns the document as the stable JSON text kept in the repository."""
    return json.dumps(document, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
