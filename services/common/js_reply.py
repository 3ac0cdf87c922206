"""A JetStream message's delivery numbers, read straight from its reply subject.

nats-py's ``Msg.metadata`` builds, at its first use on a message, a ``Metadata`` with two dataclasses and a
``datetime`` of the delivery time: ~9 µs a message, where the consumers need one or two integers. On the ordered
follows (the scheduler's snapshot and the controller's deadlines: ~21 deliveries per session) and the durable
pulls that was about 8 % of the scheduler's CPU under ``ops/bench/bench_api.py``. The reply subject of the form the
server sends here, ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>``, is
read by splitting it once (~0.6 µs); any other form (with a domain, or not a JetStream message at all) goes
through ``Msg.metadata`` as before, with the same values and the same errors.
"""

from __future__ import annotations

from typing import NamedTuple

from nats.aio.msg import Msg

__all__ = ["Delivery", "delivery_of"]

_V1_TOKENS = 9
"""Tokens of a reply subject without a domain (nats-py's ``_V1_TOKEN_COUNT``)."""


class Delivery(NamedTuple):
    """What ``Msg.metadata`` says of a delivery that the consumers use."""

    stream_seq: int
    num_delivered: int
    num_pending: int


def delivery_of(msg: Msg) -> Delivery:
    """Returns the stream sequence, delivery count and pending count of a JetStream message; raises as
    ``msg.metadata`` does (``NotJSMessageError``) when it is none."""
    tokens = msg.reply.split(".") if msg.reply else ()
    if len(tokens) == _V1_TOKENS and tokens[0] == "$JS" and tokens[1] == "ACK":
        return Delivery(int(tokens[5]), int(tokens[4]), int(tokens[8]))
    metadata = msg.metadata
    return Delivery(metadata.sequence.stream, metadata.num_delivered, metadata.num_pending)
