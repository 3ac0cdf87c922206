"""Contracts: slot parsing, the event codec and subject names."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import msgspec
import pytest

from contracts.catalog import ALL_EVENTS, decode_event, encode_event, event_class
from contracts.envelope import Metadata
from contracts.session import KernelSpec, SessionRequested, SessionSpec
from contracts.slots import (
    SlotError, add_slots, fits, parse_amount, parse_slots, stored_slots, subtract_slots, sum_slots,
)
from contracts.subjects import SubjectError, event_subject, report_subject


@pytest.mark.parametrize(
    ("slot", "raw", "expected"),
    [
        ("cpu", "2", Decimal(2)),
        ("cpu", "0.5", Decimal("0.5")),
        ("mem", "4g", Decimal(4 * 1024**3)),
        ("mem", "256MiB", Decimal(256 * 1024**2)),
        ("mem", 1024, Decimal(1024)),
        ("cuda.shares", "0.25", Decimal("0.25")),
        ("cuda.shares", "0.000001", Decimal("0.000001")),
        ("cpu", "1000000000", Decimal(10**9)),
        ("mem", str(2**63 - 1), Decimal(2**63 - 1)),
        ("mem", "7p", Decimal(7 * 1024**5)),
    ],
)
def test_parses_amounts(slot: str, raw: str, expected: Decimal) -> None:
    assert parse_amount(slot, raw) == expected


@pytest.mark.parametrize(
    ("slot", "raw", "message"),
    [
        ("cpu", "-1", "cannot parse"),
        ("cpu", -1, "non-negative"),
        ("gpu", "1", "unknown resource slot"),
        ("cpu", 1.5, "floats are not accepted"),
        ("cpu", "2g", "takes no unit"),
        ("mem", "lots", "cannot parse"),
        ("cpu", Decimal("NaN"), "non-negative"),
        ("mem", "1" + "0" * 50, "at most 9223372036854775807 bytes"),  # halted every scheduling pass
        ("mem", "8192p", "at most 9223372036854775807 bytes"),
        ("cpu", "1000000001", "at most 1000000000"),
        ("cpu", "0.0000001", "at most 6 decimal places"),  # its sums and differences drifted at 28 digits
        ("cuda.shares", Decimal("1E-31"), "at most 6 decimal places"),
    ],
)
def test_refuses_bad_amounts(slot: str, raw: object, message: str) -> None:
    with pytest.raises(SlotError, match=message):
        parse_amount(slot, raw)  # type: ignore[arg-type]


def test_slot_arithmetic() -> None:
    a = parse_slots({"cpu": "4", "mem": "8g"})
    b = parse_slots({"cpu": "1", "cuda.device": "1"})
    assert add_slots(a, b)["cuda.device"] == 1
    assert subtract_slots(a, b)["cpu"] == 3
    assert fits({"cpu": Decimal(4)}, a)
    assert not fits({"cpu": Decimal("4.5")}, a)
    assert not fits({"cuda.device": Decimal(1)}, a)
    assert fits({"cuda.device": Decimal(0)}, a)


@pytest.mark.parametrize("terms", [
    [],
    [{"mem": Decimal("1E+1"), "cpu": Decimal("-0")}],
    [{"cpu": Decimal("1.50")}, {"mem": Decimal("2"), "cpu": Decimal("0.5")}, {"cuda.shares": Decimal("0.25")}],
])
def test_a_sum_of_slots_is_the_pairwise_sum_with_the_same_values_names_and_order(terms: list[dict[str, Decimal]]) -> None:
    pairwise: dict[str, Decimal] = {}
    for term in terms:
        pairwise = add_slots(pairwise, term)
    total = sum_slots(iter(terms))
    assert list(total.items()) == list(pairwise.items())
    assert [str(v) for v in total.values()] == [str(v) for v in pairwise.values()]  # "10", not "1E+1"


def _requested() -> SessionRequested:
    return SessionRequested(
        event_id=uuid.UUID(int=1),
        originator_id="s1",
        originator_version=1,
        timestamp=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        metadata=Metadata(actor="AKIA", correlation_id="c1"),
        owner="AKIA",
        spec=SessionSpec(
            name="n", image="python",
            kernels=[KernelSpec(kernel_id="k0", slots={"cpu": Decimal("1.5"), "mem": Decimal(1024)})],
        ),
    )


def test_codec_round_trips_and_uses_stable_names() -> None:
    event = _requested()
    data = encode_event(event)
    assert b'"type":"session.requested"' in data
    assert b'"cpu":"1.5"' in data  # decimals travel as strings, never floats
    assert decode_event(data) == event
    assert encode_event(decode_event(data)) == data


def test_every_event_type_has_a_unique_stable_name() -> None:
    names = [cls.type_name() for cls in ALL_EVENTS]
    assert len(names) == len(set(names))
    assert all("." in n and not n.startswith("contracts") for n in names)
    assert event_class("session.requested") is SessionRequested


def test_decoding_refuses_garbage_and_unknown_types() -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_event(b"not json")
    with pytest.raises(msgspec.ValidationError):
        decode_event(b'{"type":"session.exploded"}')


def test_subjects() -> None:
    assert event_subject("session.requested", "abc") == "ev.session.abc.requested"
    assert report_subject("a-1", "kernel_running") == "rp.agent.a-1.kernel_running"
    for bad in ("a.b", "a b", "*", ">", ""):
        with pytest.raises(SubjectError):
            event_subject("session.requested", bad)


def test_stored_amounts_are_read_back_as_recorded_whatever_the_input_bounds() -> None:
    """The pending gate read stored amounts with ``parse_slots``: ``str(Decimal)`` of a small one is ``1E-8``, which
    input refuses, and every later createSession of that keypair was INTERNAL."""
    stored = {"cpu": str(Decimal("0.00000001")), "mem": "1073741824"}
    assert stored["cpu"] == "1E-8"
    assert stored_slots(stored) == {"cpu": Decimal("1E-8"), "mem": Decimal(1024**3)}
    with pytest.raises(SlotError):
        parse_slots(stored)
