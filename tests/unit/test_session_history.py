"""History from before ``SessionSpec``: a ``session.requested`` stored with the request's fields
flat beside ``owner`` still decodes — on the bus (``decode_event``), from the event store (the
msgspec mapper) and in the projector — to the event with its nested spec, and the current form
is decoded once, never through the upcaster."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import msgspec
import pytest
from eventsourcing.persistence import StoredEvent

from contracts import catalog
from contracts.catalog import decode_event, encode_event
from contracts.envelope import Metadata
from contracts.session import KernelSpec, SessionRequested, SessionSpec
from contracts.status import ClusterMode, SessionStatus, SessionType
from contracts.subjects import event_subject
from domain import session as session_domain
from services.common.store import BerthApplication, MsgspecMapper
from tests.support.projections import Feeder, feed, read_models  # noqa: F401

OLD_FLAT = (
    b'{"type":"session.requested","event_id":"00000000-0000-0000-0000-000000000001","originator_id":"s1",'
    b'"originator_version":1,"timestamp":"2026-01-01T00:00:00Z","metadata":{"actor":"AK1","correlation_id":"c1",'
    b'"causation_id":null,"trace":{}},"name":"train","owner":"AK1","image":"python:3.11","session_type":"batch",'
    b'"kernels":[{"kernel_id":"s1-k0","cluster_role":"main","cluster_idx":0,"slots":{"cpu":"1.5","mem":"1073741824"}},'
    b'{"kernel_id":"s1-k1","cluster_role":"sub","cluster_idx":1,"slots":{"cpu":"1.5","mem":"1073741824"}}],'
    b'"startup_command":"make","user":"alice","domain":"lab","project":"ml","resource_group":"gpu","priority":50,'
    b'"cluster_mode":"multi-node","starts_at":"2026-01-02T03:04:05Z","batch_timeout":60,"dependencies":["s0"],'
    b'"designated_agents":["a1"]}'
)
"""A ``session.requested`` exactly as the flat form encoded it (every field present)."""

OLD_BEFORE_TENANCY = (
    b'{"type":"session.requested","event_id":"00000000-0000-0000-0000-000000000002","originator_id":"s2",'
    b'"originator_version":1,"timestamp":"2026-01-01T00:00:00Z","metadata":{"actor":"AK1","correlation_id":"c1",'
    b'"causation_id":null,"trace":{}},"name":"n","owner":"AK1","image":"py","session_type":"interactive",'
    b'"kernels":[{"kernel_id":"s2-k0","cluster_role":"main","cluster_idx":0,"slots":{"cpu":"1","mem":"1024"}}],'
    b'"startup_command":null}'
)
"""An older flat ``session.requested``, from before tenancy and the scheduling options."""

GIB = Decimal(1024**3)
META = Metadata(actor="AK1", correlation_id="c1")
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

EXPECTED = SessionRequested(
    event_id=uuid.UUID(int=1), originator_id="s1", originator_version=1, timestamp=T0, metadata=META, owner="AK1",
    spec=SessionSpec(
        name="train", image="python:3.11", session_type=SessionType.BATCH,
        kernels=[KernelSpec(kernel_id="s1-k0", slots={"cpu": Decimal("1.5"), "mem": GIB}),
                 KernelSpec(kernel_id="s1-k1", cluster_role="sub", cluster_idx=1,
                            slots={"cpu": Decimal("1.5"), "mem": GIB})],
        startup_command="make", user="alice", domain="lab", project="ml", resource_group="gpu", priority=50,
        cluster_mode=ClusterMode.MULTI_NODE, starts_at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        batch_timeout=60, dependencies=["s0"], designated_agents=["a1"],
    ),
)
EXPECTED_BEFORE_TENANCY = SessionRequested(
    event_id=uuid.UUID(int=2), originator_id="s2", originator_version=1, timestamp=T0, metadata=META, owner="AK1",
    spec=SessionSpec(name="n", image="py",
                     kernels=[KernelSpec(kernel_id="s2-k0", slots={"cpu": Decimal(1), "mem": Decimal(1024)})]),
)


def stored(data: bytes, originator_id: str) -> StoredEvent:
    return StoredEvent(originator_id=originator_id, originator_version=1, topic="session.requested", state=data)


@pytest.mark.parametrize("data, expected", [(OLD_FLAT, EXPECTED), (OLD_BEFORE_TENANCY, EXPECTED_BEFORE_TENANCY)],
                         ids=["flat", "before-tenancy"])
def test_a_flat_session_requested_decodes_to_the_nested_spec_on_both_paths(
    data: bytes, expected: SessionRequested
) -> None:
    from_the_bus = decode_event(data)
    from_the_store = MsgspecMapper().to_domain_event(stored(data, expected.originator_id))
    assert from_the_bus == expected
    assert from_the_store == expected
    assert isinstance(from_the_bus, SessionRequested) and isinstance(from_the_bus.spec, SessionSpec)


def test_an_upcast_event_encodes_in_the_current_form() -> None:
    data = encode_event(decode_event(OLD_FLAT))
    assert set(msgspec.json.decode(data)) == {
        "type", "event_id", "originator_id", "originator_version", "timestamp", "metadata", "owner", "spec"}
    assert decode_event(data) == EXPECTED


def test_the_current_form_is_decoded_once_without_the_upcaster(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(obj: object) -> None:
        raise AssertionError("the current form went through the upcaster")

    monkeypatch.setattr(catalog, "upcast", refuse)
    assert decode_event(encode_event(EXPECTED)) == EXPECTED


@pytest.mark.parametrize("data, fragment", [
    (OLD_FLAT.replace(b'"image":"python:3.11",', b""), "spec"),
    (OLD_FLAT.replace(b'"priority":50', b'"priority":"high"'), "spec"),
    (encode_event(EXPECTED).replace(b'"priority":50', b'"priority":"high"'), "$.spec.priority"),
    (b'{"type":"session.scheduled","originator_id":"s1"}', "event_id"),
])
def test_a_payload_of_neither_form_is_still_refused_with_the_decode_error(data: bytes, fragment: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=r"\S") as refused:
        decode_event(data)
    assert fragment in str(refused.value)


def test_an_aggregate_with_flat_history_loads_with_its_spec() -> None:
    app = BerthApplication(None)
    try:
        app.recorder.insert_events([stored(OLD_FLAT, "s1")])
        state = app.current("s1", session_domain.evolve)
    finally:
        app.close()
    assert state is not None and state.spec == EXPECTED.spec and state.owner == "AK1"
    assert state.status is SessionStatus.PENDING and [k.kernel_id for k in state.kernels] == ["s1-k0", "s1-k1"]


def test_the_projector_applies_flat_history(feed: Feeder) -> None:
    result = feed.apply(feed.raw(event_subject("session.requested", "s1"), OLD_FLAT, "1"))
    assert not feed.rejected, feed.rejected
    assert result is not None
    assert feed.row(
        "SELECT name, owner, image, session_type, status, cluster_size, user_name, domain, project, resource_group,"
        " priority FROM sessions WHERE session_id = 's1'"
    ) == ("train", "AK1", "python:3.11", "batch", "PENDING", 2, "alice", "lab", "ml", "gpu", 50)
    assert feed.rows("SELECT kernel_id, cluster_role FROM kernels WHERE session_id = 's1' ORDER BY kernel_id") == [
        ("s1-k0", "main"), ("s1-k1", "sub")]
