"""Input limits (``contracts.limits``): each field that reaches an event from the API has a size
(and, for names and images, a shape) limit; a refusal names the field and the limit; a command
at every limit still yields events far below the travel limit."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from contracts import commands as c
from contracts import tenancy_commands as tc
from contracts.catalog import encode_event
from contracts.limits import IMAGE_REFERENCE, LIMITS, LimitError, Text, check_limits
from contracts.mounts import MAX_MOUNTS, MountSpec
from contracts.session import KernelSpec, SessionSpec
from contracts.slots import MAX_BYTES
from contracts.tenancy import ResourceGroupCreated, ResourceGroupOptions, Visibility
from contracts.travel import MAX_EVENT_BYTES, check_travels
from domain import agent as agent_domain
from domain import session as session_domain
from services.application.context import make_context

GIB = Decimal(1024**3)


def request(**fields: object) -> c.RequestSession:
    values: dict[str, object] = {
        "name": "train", "image": "berth/python:latest",
        "kernels": [KernelSpec(kernel_id="s1-k0", slots={"cpu": Decimal(1), "mem": GIB})],
    }
    values.update(fields)
    return c.RequestSession(owner="AK1", spec=SessionSpec(**values))  # type: ignore[arg-type]


@pytest.mark.parametrize("reference", [
    "berth/python:latest", "python:3.11", "py", "ubuntu", "localhost:5000/team/app:1.0", "cr.io/a-b/c__d/e.f:v1_2-rc",
    "registry.example.com/app@sha256:" + "a" * 64, "app:1@sha256:" + "0" * 64,
])
def test_docker_image_references_are_accepted(reference: str) -> None:
    check_limits(request(image=reference))


@pytest.mark.parametrize("reference, fragment", [
    ("  ", "image '  ' is not valid"),
    ("Python:3", "not valid"),
    ("python:3\n", "not valid"),
    ("a b", "not valid"),
    ("x//y", "not valid"),
    ("app:", "not valid"),
    ("a" * 450_000, "image: at most 255 characters, got 450000"),
])
def test_a_bad_image_is_refused_naming_the_field(reference: str, fragment: str) -> None:
    with pytest.raises(LimitError) as refused:
        check_limits(request(image=reference))
    assert fragment in str(refused.value)
    assert len(str(refused.value)) < 400, "the refusal never echoes a huge value"


@pytest.mark.parametrize("name", ["train", "e2e", "session-0123abcd", "job_1.v2", "A", "x" * 64])
def test_session_names_of_letters_digits_dot_dash_underscore_are_accepted(name: str) -> None:
    check_limits(request(name=name))


@pytest.mark.parametrize("name, fragment", [
    ("x" * 65, "session name: at most 64 characters, got 65"),
    ("", "session name '' is not valid"),
    ("my session", "is not valid: use letters, digits"),
    ("train\n", "is not valid"),
    ("-lead", "is not valid"),
    ("é", "is not valid"),
])
def test_a_bad_session_name_is_refused(name: str, fragment: str) -> None:
    with pytest.raises(LimitError, match="session name") as refused:
        check_limits(request(name=name))
    assert fragment in str(refused.value)


def test_the_startup_command_is_limited_in_utf8_bytes() -> None:
    check_limits(request(startup_command="é" * 32 * 1024))  # 64 KiB exactly
    with pytest.raises(LimitError, match=r"startupCommand: at most 65536 bytes \(UTF-8\), got 65538"):
        check_limits(request(startup_command="é" * (32 * 1024 + 1)))


@pytest.mark.parametrize("fields, fragment", [
    ({"dependencies": ["d"] * 65}, "dependencies: at most 64 entries, got 65"),
    ({"designated_agents": ["a" * 129]}, "designatedAgents entry: at most 128 characters"),
    ({"kernels": [KernelSpec(kernel_id="k", slots={"cpu": Decimal("9" * 65)})]}, "resource amount: at most 64"),
    ({"project": "p" * 129}, "project: at most 128"),
])
def test_lists_and_nested_values_are_limited(fields: dict, fragment: str) -> None:
    with pytest.raises(LimitError) as refused:
        check_limits(request(**fields))
    assert fragment in str(refused.value)


@pytest.mark.parametrize("command, fragment", [
    (tc.CreateDomain(name="d" * 65), "name: at most 64 characters"),
    (tc.CreateDomain(name="d", description="x" * 1025), "description: at most 1024 characters"),
    (tc.CreateProject(name="p", domain="d", total_resource_slots={"mem": "1" * 65}), "resource amount: at most 64"),
    (tc.CreateProject(name="p", domain="d", total_resource_slots={f"s{i}": "1" for i in range(17)}),
     "resource slots: at most 16 entries"),
    (tc.CreateUser(name="u", domain="d", role="r" * 33), "role: at most 32"),
    (tc.CreateUser(name="u", domain="d", projects=["p"] * 257), "projects: at most 256 entries"),
    (tc.CreateKeypair(user="u", resource_policy="p" * 65), "resourcePolicy: at most 64"),
    (tc.UpdateResourcePolicy(limits=tc.LimitsChange(max_pending_session_resource_slots={"cpu": "1" * 65})),
     "resource amount: at most 64"),
    (tc.CreateResourceGroup(name="g", options=tc.GroupOptionsChange(domains=["d"] * 257)), "domains: at most 256"),
    (tc.UpdateResourceGroup(options=tc.GroupOptionsChange(keypairs=["k" * 65])), "keypairs entry: at most 64"),
    (tc.UpdateResourceGroup(options=tc.GroupOptionsChange(scheduler="s" * 33)), "scheduler: at most 32"),
])
def test_tenancy_commands_are_limited(command: msgspec.Struct, fragment: str) -> None:
    with pytest.raises(LimitError) as refused:
        check_limits(command)
    assert fragment in str(refused.value)


@pytest.mark.parametrize("command", [
    tc.CreateDomain(name="lab", description="a\x00b"),
    tc.CreateUser(name="u", domain="d\x00"),
    tc.CreateResourceGroup(name="g", options=tc.GroupOptionsChange(keypairs=["k\x00"])),
    request(startup_command="python\x00"),
])
def test_no_text_holds_a_nul_character(command: msgspec.Struct) -> None:
    """PostgreSQL's text and jsonb cannot hold one: such an event could never be projected."""
    with pytest.raises(LimitError, match="must not contain NUL characters"):
        check_limits(command)


def test_every_command_from_the_api_with_text_fields_has_limits() -> None:
    from_api = {SessionSpec, tc.CreateDomain, tc.UpdateDomain, tc.CreateProject, tc.UpdateProject, tc.CreateUser,
                tc.CreateKeypair, tc.ChangeKeypairPolicy, tc.CreateResourcePolicy, tc.CreateResourceGroup}
    assert from_api <= set(LIMITS)
    for cls, fields in LIMITS.items():
        assert set(fields) <= set(cls.__struct_fields__), cls


def test_patterns_are_anchored_by_fullmatch() -> None:
    assert IMAGE_REFERENCE.fullmatch("python") and not IMAGE_REFERENCE.fullmatch("python\n")
    name = LIMITS[SessionSpec]["name"]
    assert isinstance(name, Text) and name.pattern is not None and not name.pattern.fullmatch("a\n")


def test_a_request_at_every_limit_yields_events_that_travel() -> None:
    """The session's event and the kernel assignments on the agent (which copy the image, the
    startup command and the mounts) stay far below the travel limit."""
    longest = Decimal("999999999.999999")  # the longest count within the slots' bounds
    kernels = [KernelSpec(kernel_id=f"{'k' * 120}{i:03d}", slots={"cpu": longest, "mem": MAX_BYTES,
                                                                   "cuda.device": longest})
               for i in range(64)]
    mounts = [MountSpec(folder_id="f" * 64, name="m" * 128, volume="v" * 64, target="/" + "é" * 255, permission="rw")
              for _ in range(MAX_MOUNTS)]
    command = request(name="n" * 64, image="r" * 240 + ":" + "t" * 14, startup_command="x" * 64 * 1024,
                      kernels=kernels, dependencies=["d" * 128] * 64, designated_agents=["a" * 128] * 64,
                      user="u" * 64, domain="d" * 64, project="p" * 64, resource_group="g" * 64, mounts=mounts)
    check_limits(command)
    ctx = make_context("A" * 128)
    events = session_domain.decide(None, command, ctx, "s" * 128)
    agent = agent_domain.decide(None, c.RegisterAgent(capacity={"cpu": Decimal(1), "mem": GIB},
                                                      backend="simulated", hostname="h"), ctx, "a" * 128)
    assigned = agent_domain.decide(agent_domain.replay(agent), c.AssignKernel(
        kernel_id=kernels[0].kernel_id, session_id="s" * 128, image=command.spec.image,
        slots={"cpu": Decimal(1), "mem": GIB},
        startup_command=command.spec.startup_command, mounts=mounts), ctx, "a" * 128)
    check_travels(events + assigned)
    assert max(len(encode_event(e)) for e in events + assigned) < MAX_EVENT_BYTES // 2


def test_a_resource_group_at_every_limit_travels() -> None:
    names = ["n" * 64] * 256
    visibility = Visibility(public=False, domains=names, projects=names, keypairs=names)
    event = ResourceGroupCreated(
        event_id=make_context("x").new_id(), originator_id="rgroup-" + "g" * 64, originator_version=1,
        timestamp=make_context("x").now, metadata=make_context("A" * 128).metadata, name="g" * 64,
        description="é" * 1024, options=ResourceGroupOptions(visibility=visibility))
    check_travels([event])
    assert len(encode_event(event)) < MAX_EVENT_BYTES // 2
