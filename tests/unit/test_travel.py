"""The travel guard where events are saved: an event too large for a NATS message, or whose
subject would hold an invalid token, is refused and nothing is recorded (in-memory store)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest

from contracts import commands as c
from contracts.catalog import ALL_EVENTS, encode_event
from contracts.envelope import Metadata
from contracts.session import KernelSpec, SessionRequested, SessionSpec
from contracts.subjects import SubjectError, check_token, event_subject, session_events_filter
from contracts.travel import MAX_EVENT_BYTES, TravelError, check_travels
from services.application.context import make_context
from services.application.sessions import Sessions

NOW = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def requested(session_id: str = "s1", **fields: object) -> SessionRequested:
    values: dict[str, object] = {
        "name": "s", "image": "python:3.11",
        "kernels": [KernelSpec(kernel_id=f"{session_id}-k", slots={"cpu": Decimal(1), "mem": Decimal(1024)})],
    }
    values.update(fields)
    return SessionRequested(event_id=uuid.uuid4(), originator_id=session_id, originator_version=1, timestamp=NOW,
                            metadata=Metadata(actor="AK1", correlation_id="c"), owner="AK1",
                            spec=SessionSpec(**values))  # type: ignore[arg-type]


def request(startup_command: str | None = None) -> c.RequestSession:
    return c.RequestSession(owner="AK1", spec=SessionSpec(
        name="s", image="python:3.11", startup_command=startup_command,
        kernels=[KernelSpec(kernel_id="k0", slots={"cpu": Decimal(1), "mem": Decimal(1024)})]))


@pytest.fixture
def sessions() -> Iterator[Sessions]:
    app = Sessions(None)
    yield app
    app.close()


@pytest.mark.parametrize("value", ["abc\n", "abc\r\n", "\nabc", "a b", "a.b", "a*", ">", "", "x" * 129, "é"])
def test_an_invalid_subject_token_is_refused(value: str) -> None:
    with pytest.raises(SubjectError):
        check_token(value)
    with pytest.raises(SubjectError):
        session_events_filter(value)


def test_every_event_type_yields_valid_subject_tokens() -> None:
    for cls in ALL_EVENTS:
        subject = event_subject(cls.type_name(), "agg-1_X")
        assert subject.count(".") == 3 and subject.startswith("ev.")


@pytest.mark.parametrize("topic", ["session", "session.requested.more", "session.req*", "se ssion.requested", "x.>"])
def test_a_type_name_that_would_add_or_break_tokens_is_refused(topic: str) -> None:
    with pytest.raises(SubjectError):
        event_subject(topic, "s1")


def test_an_event_within_the_limit_travels() -> None:
    event = requested(startup_command="x" * (MAX_EVENT_BYTES - 2000))
    assert len(encode_event(event)) <= MAX_EVENT_BYTES
    check_travels([event])


def test_an_event_over_the_limit_is_refused_naming_its_size_and_the_limit() -> None:
    event = requested(startup_command="x" * MAX_EVENT_BYTES)
    with pytest.raises(TravelError) as refused:
        check_travels([requested("s0"), event])
    message = str(refused.value)
    assert "session.requested" in message and "s1" in message
    assert str(len(encode_event(event))) in message and str(MAX_EVENT_BYTES) in message
    assert isinstance(refused.value, SubjectError), "mapped to BAD_INPUT wherever SubjectError is"


def test_an_aggregate_id_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(TravelError, match="session.requested"):
        check_travels([requested("s1\n")])


def test_the_store_records_nothing_that_cannot_travel(sessions: Sessions) -> None:
    ctx = make_context("AK1")
    with pytest.raises(TravelError):
        sessions.request("s1", request("x" * 450_000), ctx)
    with pytest.raises(TravelError):  # bypassing the domain's checks: the store still refuses
        sessions.record([requested("s2\n")])
    assert sessions.position() == 0 and sessions.load("s1") == []
    assert sessions.request("s3", request("python train.py"), ctx) == 1


def test_one_bad_event_refuses_the_whole_save(sessions: Sessions) -> None:
    with pytest.raises(TravelError):
        sessions.record([requested("s1"), requested("s2", startup_command="x" * (MAX_EVENT_BYTES + 1))])
    assert sessions.position() == 0
