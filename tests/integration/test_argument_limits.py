"""Bounded input everywhere, generated from the schema: every text and every list an operation takes
(root arguments and the fields of input objects, at any depth) is tried, one at a time, against one
real gateway: a 70,000-character text, a 1,000-entry list and a text holding a NUL character are each
refused with BAD_INPUT (the size named in the message, which never echoes the input) and record
nothing. Queries and mutations go over HTTP, subscriptions over the websocket (graphql-transport-ws).

An argument added to the schema is tried as soon as it exists: it passes only once it is bounded.
``EXCEPTIONS`` lists the two that are bounded by other means, and how.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any, NamedTuple

import graphql
import pytest
import pytest_asyncio

from contracts.execution import MAX_EXEC_INPUT
from services.gateway.main import WS_MAX_MESSAGE
from services.gateway.schema import build_schema
from services.sdk.client import BerthAPIError, BerthClient
from tests.support.isolation import World, tenant_world

BIG = 70_000
"""Over every text limit but code's and stdin's (1 MiB together)."""
MANY = 1_000
"""Over every list limit (256 at most)."""
EXCEPTIONS = {
    "Subscription.execute(code)": "code and stdin: 1 MiB together (BAD_INPUT), a message over the websocket's limit "
                                  "closes it (1009: MESSAGE_TOO_BIG, below); they are never recorded (a digest is) "
                                  "and may hold any character",
    "Subscription.execute(stdin)": "as code",
}


class Leaf(NamedTuple):
    """One text or list an operation takes: ``field`` (``Type.name``), the root argument, the path of
    input-object fields below it, and whether it is the list itself."""

    field: str
    argument: str
    path: tuple[str, ...]
    is_list: bool

    @property
    def label(self) -> str:
        return f"{self.field}({self.argument}){''.join('.' + step for step in self.path)}{'[]' if self.is_list else ''}"


def _roots(schema: graphql.GraphQLSchema) -> Iterator[tuple[str, graphql.GraphQLObjectType]]:
    for kind, root in (("query", schema.query_type), ("mutation", schema.mutation_type),
                       ("subscription", schema.subscription_type)):
        if root is not None:
            yield kind, root


def _leaves(field: str, argument: str, type_: graphql.GraphQLInputType, path: tuple[str, ...]) -> Iterator[Leaf]:
    type_ = graphql.get_nullable_type(type_)
    if isinstance(type_, graphql.GraphQLList):
        yield Leaf(field, argument, path, True)
        yield from _leaves(field, argument, type_.of_type, path)
    elif isinstance(type_, graphql.GraphQLInputObjectType):
        for name, sub in type_.fields.items():
            yield from _leaves(field, argument, sub.type, (*path, name))
    elif type_ is graphql.GraphQLString:
        yield Leaf(field, argument, path, False)


SCHEMA = build_schema()._schema
LEAVES = [leaf for _, root in _roots(SCHEMA) for name, field in root.fields.items()
          for arg_name, arg in field.args.items() for leaf in _leaves(f"{root.name}.{name}", arg_name, arg.type, ())]


def _required(value: graphql.GraphQLArgument | graphql.GraphQLInputField) -> bool:
    return graphql.is_non_null_type(value.type) and value.default_value is graphql.Undefined


def _minimal(type_: graphql.GraphQLInputType) -> Any:
    """Returns a small valid-looking value of a type: required input fields only; a text is
    ``default``, the name of the domain, project, policy and resource group every installation has
    (so that an update finds what it loads, and refuses the bad value rather than a missing name)."""
    type_ = graphql.get_nullable_type(type_)
    if isinstance(type_, graphql.GraphQLList):
        return []
    if isinstance(type_, graphql.GraphQLInputObjectType):
        return {name: _minimal(sub.type) for name, sub in type_.fields.items() if _required(sub)}
    return {"Int": 1, "Float": 1.0, "Boolean": False, "DateTime": "2030-01-01T00:00:00+00:00"}.get(type_.name, "default")


def _with(type_: graphql.GraphQLInputType, path: tuple[str, ...], is_list: bool, bad: Any) -> Any:
    """Returns a value of ``type_`` whose leaf at ``path`` is ``bad`` (``bad`` replaces the list itself
    when ``is_list`` and the path ends there), the rest minimal."""
    type_ = graphql.get_nullable_type(type_)
    if isinstance(type_, graphql.GraphQLList):
        if is_list and not path:
            return bad
        return [_with(type_.of_type, path, is_list, bad)]
    if not path:
        return bad
    value = _minimal(type_)
    value[path[0]] = _with(type_.fields[path[0]].type, path[1:], is_list, bad)
    return value


def request_for(leaf: Leaf, bad: Any) -> tuple[str, str, dict[str, Any]]:
    """Returns the operation kind, the document and the variables that send ``bad`` at ``leaf``."""
    root_name, name = leaf.field.split(".")
    kind, root = next((kind, root) for kind, root in _roots(SCHEMA) if root.name == root_name)
    field = root.fields[name]
    variables = {arg_name: _with(arg.type, leaf.path, leaf.is_list, bad) if arg_name == leaf.argument
                 else _minimal(arg.type) for arg_name, arg in field.args.items()
                 if arg_name == leaf.argument or _required(arg)}
    declared = ", ".join(f"${n}: {field.args[n].type}" for n in variables)
    passed = ", ".join(f"{n}: ${n}" for n in variables)
    selection = "" if graphql.is_leaf_type(graphql.get_named_type(field.type)) else " { __typename }"
    return kind, f"{kind}({declared}) {{ {name}({passed}){selection} }}", variables


def _entry_type(leaf: Leaf) -> graphql.GraphQLInputType:
    """Returns the type of the entries of the list at ``leaf``."""
    root_name, name = leaf.field.split(".")
    root = next(root for _, root in _roots(SCHEMA) if root.name == root_name)
    type_: Any = graphql.get_nullable_type(root.fields[name].args[leaf.argument].type)
    for step in leaf.path:
        while isinstance(type_, graphql.GraphQLList):
            type_ = graphql.get_nullable_type(type_.of_type)
        type_ = graphql.get_nullable_type(type_.fields[step].type)
    return graphql.get_nullable_type(type_.of_type)


def _bad_value(leaf: Leaf, kind: str) -> Any:
    if leaf.is_list:
        if leaf.path and leaf.path[-1] in ("resources", "totalResourceSlots", "maxPendingSessionResourceSlots"):
            return [{"slot": f"s{i}", "amount": "1"} for i in range(MANY)]
        entry = _entry_type(leaf)
        if isinstance(entry, graphql.GraphQLInputObjectType):  # a list of input objects: minimal ones
            return [_minimal(entry) for _ in range(MANY)]
        return [f"x{i}" for i in range(MANY)]
    return "x" * BIG if kind == "big" else "x\x00y"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(pg_admin_dsn: str, nats_url: str) -> AsyncIterator[World]:
    async with tenant_world(pg_admin_dsn, nats_url) as built:
        yield built


async def _refusal(client: BerthClient, kind: str, document: str, variables: dict[str, Any]) -> BerthAPIError:
    try:
        if kind == "subscription":
            async with asyncio.timeout(20):
                async for data in client.subscribe(document, variables):
                    raise AssertionError(f"not refused: {data}")
        else:
            data = await client.execute(document, variables)
            raise AssertionError(f"not refused: {data}")
    except BerthAPIError as exc:
        return exc
    raise AssertionError("the subscription ended without an answer")


def test_the_schema_has_texts_and_lists_to_try() -> None:
    labels = {leaf.label for leaf in LEAVES}
    assert len(labels) > 80 and set(EXCEPTIONS) <= labels


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("variant", ["big", "nul"])
@pytest.mark.parametrize("leaf", [leaf for leaf in LEAVES if leaf.label not in EXCEPTIONS], ids=lambda leaf: leaf.label)
async def test_every_text_and_list_is_bounded(world: World, leaf: Leaf, variant: str) -> None:
    if leaf.is_list and variant == "nul":
        pytest.skip("a list's entries are texts, tried as texts")
    kind, document, variables = request_for(leaf, _bad_value(leaf, variant))
    before = world.events()
    refused = await _refusal(world.clients["superadmin"], kind, document, variables)
    assert refused.code == "BAD_INPUT", f"{leaf.label}: {refused.code}: {refused.message[:300]}"
    assert len(refused.message) < 1000, "the refusal does not echo the input"
    if variant == "big":
        assert (f"{MANY}" if leaf.is_list else f"{BIG}") in refused.message or "at most" in refused.message, \
            refused.message
    assert world.events() == before, f"{leaf.label}: a refused request recorded something"


@pytest.mark.asyncio(loop_scope="module")
async def test_code_over_the_websocket_message_limit_closes_the_socket(world: World) -> None:
    leaf = Leaf("Subscription.execute", "code", (), False)
    kind, document, variables = request_for(leaf, "x" * (MAX_EXEC_INPUT + 1))
    refused = await _refusal(world.clients["owner"], kind, document, {**variables, "sessionId": world.session_id})
    assert refused.code == "BAD_INPUT" and "must not exceed" in refused.message, refused
    kind, document, variables = request_for(leaf, "x" * (WS_MAX_MESSAGE + 1))
    refused = await _refusal(world.clients["owner"], kind, document, {**variables, "sessionId": world.session_id})
    assert refused.code == "MESSAGE_TOO_BIG" and "(1009)" not in refused.message, refused
