"""The exact scaled integers of a pass and the wording of amounts in pending reasons."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.scheduling.fixedpoint import SlotScale, add_sparse
from domain.scheduling.reasons import format_amount, format_slots
from projections.quota_usage import _canonical

GIB = 1024**3


def test_each_slot_gets_the_smallest_power_of_ten_that_makes_its_amounts_integral() -> None:
    scale = SlotScale.covering([{"cpu": Decimal("0.25"), "mem": Decimal(GIB)}, {"cpu": Decimal("2")}])
    assert scale.names == ["cpu", "mem"]
    assert scale.dense({"cpu": Decimal("2"), "mem": Decimal(GIB)}) == [200, GIB]
    assert scale.sparse({"cpu": Decimal("0.25"), "mem": Decimal(0)}) == ((0, 25),)
    assert scale.amount(0, 25) == Decimal("0.25")


def test_trailing_zeros_and_exponents_do_not_inflate_the_scale() -> None:
    scale = SlotScale.covering([{"cpu": Decimal("1.500")}, {"cpu": Decimal("1E+2")}])
    assert scale.dense({"cpu": Decimal("1E+2")}) == [1000]
    assert scale.dense({"cpu": Decimal("1.500")}) == [15]


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_non_finite_amounts_are_refused(bad: Decimal) -> None:
    with pytest.raises(ValueError, match="cpu"):
        SlotScale.covering([{"cpu": bad}])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.decimals(min_value=0, max_value=10**6, places=4, allow_nan=False), min_size=2, max_size=8))
def test_scaled_integers_add_and_compare_like_the_decimals(amounts: list[Decimal]) -> None:
    scale = SlotScale.covering([{"cpu": a} for a in amounts])
    ints = [scale.scaled("cpu", a) for a in amounts]
    assert scale.amount(0, sum(ints)) == sum(amounts)
    assert sorted(range(len(amounts)), key=lambda i: (ints[i], i)) == sorted(
        range(len(amounts)), key=lambda i: (amounts[i], i)
    )


def test_negative_amounts_convert_exactly() -> None:
    scale = SlotScale.covering([{"cpu": Decimal("-1.5")}])
    assert scale.dense({"cpu": Decimal("-1.5")}) == [-15]


def test_add_sparse_sums_slot_by_slot() -> None:
    assert add_sparse(((0, 1), (2, 5)), ((1, 3), (2, 1))) == ((0, 1), (1, 3), (2, 6))
    assert add_sparse((), ((1, 3),)) == ((1, 3),)


@pytest.mark.parametrize(
    ("slot", "amount", "text"),
    [
        ("mem", Decimal(4 * GIB), "4 GiB"),
        ("mem", Decimal(3 * GIB // 2), "1.5 GiB"),
        ("mem", Decimal(512), "512 B"),
        ("mem", Decimal(1024**2), "1 MiB"),
        ("cpu", Decimal("2.50"), "2.5"),
        ("cpu", Decimal("1E+2"), "100"),
        ("cuda.device", Decimal(1), "1"),
    ],
)
def test_amounts_are_worded_for_people(slot: str, amount: Decimal, text: str) -> None:
    assert format_amount(slot, amount) == text


def test_slots_are_worded_in_name_order() -> None:
    assert format_slots({"mem": Decimal(4 * GIB), "cpu": Decimal(2)}) == "2 cpu, 4 GiB mem"
    assert format_slots({}) == "nothing"


def test_amounts_recorded_before_the_slots_bounds_are_formatted_and_tallied() -> None:
    """Histories from before ``contracts.slots.MAX_BYTES`` may hold 80-digit amounts: quantizing them in the default
    28 digits raised InvalidOperation, in every scheduling pass (a pending reason) and in the quota projection."""
    huge = Decimal("1" + "0" * 70)
    assert format_amount("mem", huge).endswith(" PiB")
    assert _canonical({"mem": huge, "cpu": Decimal("2.0")}) == {"mem": huge, "cpu": Decimal(2)}
