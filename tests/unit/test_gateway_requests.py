"""The gateway's translation of a createSession input into a RequestSession command."""

from __future__ import annotations

from decimal import Decimal

import pytest

from contracts.status import SessionType
from services.gateway.errors import GatewayError
from services.gateway.sessions.mutations import build_request
from services.gateway.sessions.types import DEFAULT_IMAGE, CreateSessionInput
from services.gateway.slots import SlotInput

SID = "0123456789abcdef0123456789abcdef"


def test_defaults() -> None:
    command = build_request(CreateSessionInput(), "AKIAOWNER", SID)
    spec = command.spec
    assert spec.name == "session-01234567" and spec.image == DEFAULT_IMAGE
    assert command.owner == "AKIAOWNER" and spec.session_type is SessionType.INTERACTIVE
    assert [(k.kernel_id, k.cluster_role, k.cluster_idx) for k in spec.kernels] == [(f"{SID}-k0", "main", 0)]
    assert spec.kernels[0].slots == {"cpu": Decimal(1), "mem": Decimal(1024**3)}


def test_resources_override_the_defaults_per_kernel() -> None:
    data = CreateSessionInput(resources=[SlotInput(slot="mem", amount="512m"), SlotInput(slot="cuda.shares", amount="0.5")],
                              cluster_size=3, session_type="BATCH", startup_command="make")
    spec = build_request(data, "AKIAOWNER", SID).spec
    assert [k.cluster_role for k in spec.kernels] == ["main", "sub", "sub"]
    assert all(k.slots == {"cpu": Decimal(1), "cuda.shares": Decimal("0.5"), "mem": Decimal(512 * 1024**2)}
               for k in spec.kernels)
    assert spec.session_type is SessionType.BATCH and spec.startup_command == "make"


@pytest.mark.parametrize("data", [
    CreateSessionInput(resources=[SlotInput(slot="cpu", amount="-1")]),
    CreateSessionInput(resources=[SlotInput(slot="foo.bar", amount="1")]),
    CreateSessionInput(resources=[SlotInput(slot="cpu", amount="1.5.2")]),
    CreateSessionInput(resources=[SlotInput(slot="cpu", amount="inf")]),
    CreateSessionInput(resources=[SlotInput(slot="cpu", amount="2g")]),
    CreateSessionInput(resources=[SlotInput(slot="cpu", amount="1"), SlotInput(slot="cpu", amount="1")]),
    CreateSessionInput(cluster_size=0),
    CreateSessionInput(cluster_size=65),
    CreateSessionInput(session_type="inference-ish"),
])
def test_bad_inputs_are_bad_input(data: CreateSessionInput) -> None:
    with pytest.raises(GatewayError) as refused:
        build_request(data, "AKIAOWNER", SID)
    assert refused.value.code == "BAD_INPUT"
