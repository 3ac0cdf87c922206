"""The catalogue of event types (``contracts.catalog``) is complete and sound.

Every ``Event`` subclass defined anywhere in ``contracts`` must be catalogued (else the store
cannot decode its history), carry its own tag (a subclass without ``tag=`` silently gets its
Python class name as tag), shaped ``<context>.<name>`` (the subject ``ev.<context>.<id>.<name>``
is built from it), unique, and round-trip through the one codec with an instance built from
its field types alone, so a field type the codec cannot carry fails here, not in production.
"""

from __future__ import annotations

import datetime as dt
import gc
import importlib
import pkgutil
import re
import uuid
from collections import Counter
from decimal import Decimal
from typing import Any, Iterable

import msgspec
import msgspec.inspect as mi
import pytest

import contracts
from contracts.catalog import ALL_EVENTS, decode_event, encode_event, event_class
from contracts.envelope import Event

TAG_SHAPE = re.compile(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*")
"""``<context>.<name>``: lower-case snake tokens, exactly one dot (both valid subject tokens)."""

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)


# --- the checks, as functions of their inputs (so that they can be shown to catch a violation) --


def contract_modules() -> list[str]:
    """Returns the names of every module of the ``contracts`` package, imported."""
    names = [m.name for m in pkgutil.walk_packages(contracts.__path__, prefix="contracts.")]
    for name in names:
        importlib.import_module(name)
    return names


def event_types(root: type[Event] = Event, package: str = "contracts.") -> list[type[Event]]:
    """Returns every subclass of ``root`` (at any depth) defined in a module of ``package``."""
    found: list[type[Event]] = []
    pending = list(root.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.startswith(package) and cls not in found:
            found.append(cls)
    return sorted(found, key=lambda c: (c.__module__, c.__qualname__))


def tag_of(cls: type[Event]) -> object:
    return cls.__struct_config__.tag


def missing_from(catalogue: Iterable[type[Event]], types: Iterable[type[Event]]) -> list[str]:
    catalogued = set(catalogue)
    return [f"{c.__module__}.{c.__qualname__}" for c in types if c not in catalogued]


def shared_tags(types: Iterable[type[Event]]) -> dict[object, list[str]]:
    types = list(types)
    counts = Counter(tag_of(c) for c in types)
    return {tag: [c.__qualname__ for c in types if tag_of(c) == tag] for tag, n in counts.items() if n > 1}


def badly_shaped(types: Iterable[type[Event]]) -> list[str]:
    return [f"{c.__qualname__}: {tag_of(c)!r}" for c in types
            if not (isinstance(tag_of(c), str) and TAG_SHAPE.fullmatch(tag_of(c)))]  # type: ignore[arg-type]


class CannotBuild(Exception):
    """A field type the sample builder does not know how to fill."""


def sample(t: mi.Type, full: bool) -> Any:
    """Returns a value of type ``t`` (non-empty containers; with ``full``, optional fields set too)."""
    if isinstance(t, mi.NoneType):
        return None
    if isinstance(t, mi.BoolType):
        return True
    if isinstance(t, mi.IntType):
        low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else None)
        high = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else None)
        value = 7 if low is None else max(low, 7)
        return value if high is None else min(value, high)
    if isinstance(t, mi.FloatType):
        return 1.5
    if isinstance(t, mi.StrType):
        if t.pattern is not None:
            raise CannotBuild(f"a string matching {t.pattern!r}")
        return "x" * max(t.min_length or 0, min(3, t.max_length if t.max_length is not None else 3))
    if isinstance(t, mi.BytesType):
        return b"x"
    if isinstance(t, mi.DecimalType):
        return Decimal("1.5")
    if isinstance(t, mi.DateTimeType):
        return NOW if t.tz in (True, None) else NOW.replace(tzinfo=None)
    if isinstance(t, mi.DateType):
        return NOW.date()
    if isinstance(t, mi.TimeDeltaType):
        return dt.timedelta(seconds=3)
    if isinstance(t, mi.UUIDType):
        return uuid.UUID(int=1)
    if isinstance(t, mi.EnumType):
        return next(iter(t.cls))
    if isinstance(t, mi.LiteralType):
        return t.values[0]
    if isinstance(t, mi.ListType):
        return [sample(t.item_type, full)]
    if isinstance(t, (mi.SetType, mi.FrozenSetType)):
        return (set if isinstance(t, mi.SetType) else frozenset)([sample(t.item_type, full)])
    if isinstance(t, mi.VarTupleType):
        return (sample(t.item_type, full),)
    if isinstance(t, mi.TupleType):
        return tuple(sample(i, full) for i in t.item_types)
    if isinstance(t, mi.DictType):
        return {sample(t.key_type, full): sample(t.value_type, full)}
    if isinstance(t, mi.UnionType):
        # the richest arm: a set optional field must round-trip too
        arms = [a for a in t.types if not isinstance(a, mi.NoneType)] or list(t.types)
        return sample(arms[0], full)
    if isinstance(t, mi.StructType):
        return build(t.cls, full)
    raise CannotBuild(type(t).__name__)


def build(cls: type[msgspec.Struct], full: bool) -> Any:
    """Returns an instance of ``cls``: required fields filled from their types, and with ``full``
    every optional one too (else left to its default)."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    values = {f.name: sample(f.type, full) for f in info.fields if f.required or full}
    return cls(**values)


# --- the tests ---------------------------------------------------------------------------------


def test_the_walk_finds_the_contracts_event_types() -> None:
    modules = contract_modules()
    assert {"contracts.session", "contracts.agent", "contracts.tenancy", "contracts.catalog"} <= set(modules)
    found = event_types()
    assert len(found) >= 30, found
    assert all(issubclass(c, Event) and c is not Event for c in found)


def test_every_event_type_in_contracts_is_in_the_catalogue() -> None:
    contract_modules()
    assert missing_from(ALL_EVENTS, event_types()) == [], "add them to contracts/catalog.py ALL_EVENTS"


def test_the_catalogue_holds_only_event_types_of_contracts_once_each() -> None:
    contract_modules()
    assert [c for c in ALL_EVENTS if c not in event_types()] == []
    assert [c for c, n in Counter(ALL_EVENTS).items() if n > 1] == []


def test_no_two_event_types_share_a_tag() -> None:
    contract_modules()
    assert shared_tags(set(event_types()) | set(ALL_EVENTS)) == {}


def test_every_tag_is_shaped_context_dot_name() -> None:
    contract_modules()
    assert badly_shaped(set(event_types()) | set(ALL_EVENTS)) == [], "tag='<context>.<name>', lower-case snake"


@pytest.mark.parametrize("cls", ALL_EVENTS, ids=lambda c: c.type_name())
def test_the_decoder_knows_each_catalogued_tag(cls: type[Event]) -> None:
    assert event_class(cls.type_name()) is cls
    with pytest.raises(msgspec.ValidationError) as refused:
        decode_event(msgspec.json.encode({"type": cls.type_name()}))
    assert "missing required field" in str(refused.value) or not mi.type_info(cls).fields, str(refused.value)


def _every_event_type() -> list[type[Event]]:
    contract_modules()
    return sorted(set(event_types()) | set(ALL_EVENTS), key=lambda c: str(tag_of(c)))


@pytest.mark.parametrize("full", [False, True], ids=["required-fields", "every-field"])
@pytest.mark.parametrize("cls", _every_event_type(), ids=lambda c: str(tag_of(c)))
def test_each_event_type_round_trips_through_the_codec(cls: type[Event], full: bool) -> None:
    try:
        event = build(cls, full)
    except CannotBuild as why:  # a field type the builder cannot fill: at least the decoder must know the tag
        assert event_class(cls.type_name()) is cls, f"{cls.__qualname__} ({why}) is not decodable"
        return
    data = encode_event(event)
    assert msgspec.json.decode(data)["type"] == cls.type_name()
    decoded = decode_event(data)
    assert type(decoded) is cls
    assert decoded == event
    assert encode_event(decoded) == data, "the encoding is canonical: decoding and encoding again changes no byte"


# --- the checks catch what they are for --------------------------------------------------------


def test_the_checks_see_a_violation() -> None:
    # defined here, not at module level, and collected afterwards: no other test walking Event's
    # subclasses may ever meet these strays
    class _Forgotten(Event, frozen=True, kw_only=True):  # no tag=: msgspec tags it with the class name
        pass

    class _Twin(Event, frozen=True, kw_only=True, tag="session.requested"):
        pass

    class _Unencodable(Event, frozen=True, kw_only=True, tag="test.unencodable"):
        payload: complex  # not a type the codec can carry

    strays = event_types(package=__name__)
    assert {_Forgotten, _Twin, _Unencodable} <= set(strays)
    assert missing_from(ALL_EVENTS, [_Forgotten]) == [f"{__name__}.{_Forgotten.__qualname__}"]
    assert shared_tags([*ALL_EVENTS, _Twin]) == {"session.requested": ["SessionRequested", _Twin.__qualname__]}
    assert badly_shaped([_Forgotten]) == [f"{_Forgotten.__qualname__}: '_Forgotten'"]
    with pytest.raises(CannotBuild):
        build(_Unencodable, full=False)
    assert all(c.__module__.startswith("contracts.") for c in event_types())

    del strays, _Forgotten, _Twin, _Unencodable
    gc.collect()
    assert event_types(package=__name__) == [], "the strays are gone"
