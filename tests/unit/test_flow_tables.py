"""The services' flow tables (``services/*/flow.py``) are complete, derived from the contracts,
and described by the committed AsyncAPI document.

* every catalogued event of a context a subscription takes is handled there or listed as
  ignored, so a new event type of a followed context cannot be forgotten silently;
* the filter subjects are derived from the classes, and no subject literal (``"ev.``,
  ``"rp.``) is typed anywhere in ``services/``;
* ``contracts/asyncapi.json`` is what ``ops/asyncapi.py`` generates from the tables now.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from contracts.catalog import ALL_EVENTS
from contracts.envelope import context_of
from contracts.reports import ALL_REPORTS
from contracts.subjects import event_filters, report_filters
from contracts.storage_reports import ALL_STORAGE_REPORTS
from services.common.flow import Subscription

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("berth_asyncapi", ROOT / "ops" / "asyncapi.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = _generator()
SUBSCRIPTIONS = [(service, sub) for service, subs in GENERATOR.FLOWS.items() for sub in subs]


def forgotten(sub: Subscription) -> list[str]:
    """Returns the catalogued types of the subscription's contexts it neither handles nor ignores."""
    if sub.reports:
        family = ALL_STORAGE_REPORTS if set(sub.routes) <= set(ALL_STORAGE_REPORTS) else ALL_REPORTS
        return [r.type_name() for r in family if r not in sub.routes and r not in sub.ignored]
    contexts = {context_of(cls.type_name()) for cls in sub.routes}
    return sorted(cls.type_name() for cls in ALL_EVENTS
                  if context_of(cls.type_name()) in contexts and cls not in sub.routes and cls not in sub.ignored)


def test_every_service_declares_its_flow() -> None:
    assert set(GENERATOR.FLOWS) == {"agent", "controller", "scheduler", "storage"}
    assert all(isinstance(sub, Subscription) for _, sub in SUBSCRIPTIONS)


@pytest.mark.parametrize(("service", "sub"), SUBSCRIPTIONS, ids=lambda x: getattr(x, "name", x))
def test_each_event_of_a_followed_context_is_handled_or_ignored(service: str, sub: Subscription) -> None:
    assert forgotten(sub) == [], f"{service}: route them in services/{service}/flow.py or list them as ignored"


@pytest.mark.parametrize(("service", "sub"), SUBSCRIPTIONS, ids=lambda x: getattr(x, "name", x))
def test_the_filters_are_derived_from_the_routed_classes(service: str, sub: Subscription) -> None:
    ids = {"agent_id": "node-1"}
    expected = report_filters(sub.routes) if sub.reports else event_filters(sub.routes, sub.aggregate.format(**ids))
    assert sub.filters(**ids) == expected
    assert not set(sub.routes) & set(sub.ignored)


def test_the_check_sees_a_forgotten_event() -> None:
    from contracts import agent

    sub = Subscription("t", "EVENTS", {agent.AgentLost: lambda target, event: None}, ignored=(agent.AgentRecovered,))
    assert "agent.registered" in forgotten(sub) and "agent.recovered" not in forgotten(sub)


SUBJECT_LITERAL = re.compile(r"""[fbr]?["'](ev|rp|dlq)\.""")
KNOWN: set[str] = set()
"""Files allowed a subject literal (none: every name is in contracts/subjects.py)."""


def test_no_subject_literal_in_services() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sorted((ROOT / "services").rglob("*.py"))
        if str(path.relative_to(ROOT)) not in KNOWN
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if SUBJECT_LITERAL.search(line)
    ]
    assert offenders == [], "derive subjects from the contract classes (contracts/subjects.py)"


def test_the_committed_asyncapi_document_is_current() -> None:
    document = GENERATOR.DOCUMENT
    assert document.exists(), "run .venv/bin/python ops/asyncapi.py"
    assert document.read_text() == GENERATOR.render(GENERATOR.asyncapi_document(GENERATOR.FLOWS)), (
        "contracts/asyncapi.json is stale: run .venv/bin/python ops/asyncapi.py"
    )


def test_the_document_names_every_stream_subject_and_schema() -> None:
    doc = GENERATOR.asyncapi_document(GENERATOR.FLOWS)
    assert {s["name"] for s in doc["x-streams"]} == {"EVENTS", "REPORTS", "DEADLETTER"}
    assert {f"event.{c.type_name()}" for c in ALL_EVENTS} | {f"report.{r.type_name()}" for r in ALL_REPORTS} <= set(doc["channels"])
    assert {c.__name__ for c in (*ALL_EVENTS, *ALL_REPORTS)} <= set(doc["components"]["schemas"])
