"""``DeadlineIndex`` against the obvious model (a dict scanned in full), under random operations."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from services.controller.deadline_index import DeadlineIndex

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
keys = st.sampled_from([f"s{i}" for i in range(6)])
times = st.integers(0, 20).map(lambda s: T0 + dt.timedelta(seconds=s))
operations = st.lists(st.one_of(
    st.tuples(st.just("set"), keys, st.none() | times),
    st.tuples(st.just("discard"), keys, st.none()),
    st.tuples(st.just("due"), st.none(), times),
    st.tuples(st.just("earliest"), st.none(), st.none()),
), max_size=200)


@given(operations)
def test_the_index_answers_as_a_full_scan_would(ops: list[tuple[str, str | None, dt.datetime | None]]) -> None:
    index, model = DeadlineIndex(), dict[str, dt.datetime]()
    for op, key, when in ops:
        if op == "set":
            index.set(key, when)
            if when is None:
                model.pop(key, None)
            else:
                model[key] = when
        elif op == "discard":
            index.discard(key)
            model.pop(key, None)
        elif op == "due":
            assert index.due(when) == sorted(k for k, w in model.items() if w <= when)
        else:
            assert index.earliest() == min(model.values(), default=None)
        assert len(index) == len(model)
