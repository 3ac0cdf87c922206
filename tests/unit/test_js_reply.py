"""``services.common.js_reply.delivery_of``: a JetStream message's stream sequence, delivery count and pending
count read from its reply subject without nats-py's ``Msg.metadata`` (two dataclasses and a ``datetime`` per
message); the ordered follows use it for every event they deliver."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest
from nats.aio.msg import Msg
from nats.errors import NotJSMessageError

from contracts import agent as ev
from contracts.catalog import encode_event
from contracts.envelope import Metadata
from contracts.subjects import EVENTS_STREAM
from domain.emitting import Context, Emitter
from services.common.flow import Following, Subscription
from services.common.js_reply import Delivery, delivery_of

V1 = "$JS.ACK.EVENTS.KDNpmB94.3.1234.77.1796656061560499083.5"
V2 = "$JS.ACK.hub.ACCHASH.EVENTS.KDNpmB94.3.1234.77.1796656061560499083.5.rnd"
CTX = Context(now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), metadata=Metadata(actor="test", correlation_id="c"))


def _msg(reply: str, data: bytes = b"") -> Msg:
    return Msg(_client=None, subject="ev.agent.a1.registered", reply=reply, data=data)  # type: ignore[arg-type]


@pytest.mark.parametrize("reply", [V1, V2])
def test_the_numbers_are_those_of_nats_py_metadata(reply: str) -> None:
    metadata = _msg(reply).metadata
    assert delivery_of(_msg(reply)) == Delivery(metadata.sequence.stream, metadata.num_delivered,
                                                metadata.num_pending) == (1234, 3, 5)


@pytest.mark.parametrize("reply", ["", "_INBOX.x.y", "$JS.ACK.EVENTS.c.1.2"])
def test_a_message_that_is_not_a_jetstream_delivery_raises_as_metadata_does(reply: str) -> None:
    with pytest.raises(NotJSMessageError):
        delivery_of(_msg(reply))


@pytest.fixture
def no_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("nats-py's Msg.Metadata was built")

    monkeypatch.setattr(Msg.Metadata, "_from_reply", classmethod(refuse))


@pytest.mark.usefixtures("no_metadata")
def test_a_follow_delivers_an_event_without_building_nats_py_metadata() -> None:
    applied: list[object] = []
    subscription = Subscription(name="t", stream=EVENTS_STREAM,
                                routes={ev.AgentRegistered: lambda target, event: applied.append(event)})
    caught_up = asyncio.Event()
    following = Following(None, subscription, None, caught_up, {})  # type: ignore[arg-type]
    event = Emitter("a1", 0, CTX)(ev.AgentRegistered, capacity={"cpu": Decimal(4)}, backend="sim", hostname="h")
    asyncio.run(following._deliver(_msg(V1.replace(".5", ".0"), encode_event(event))))
    assert applied == [event] and following.position == 1234 and caught_up.is_set()
