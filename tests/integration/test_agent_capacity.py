"""The agent's capacity setting and backend choice (pure; no infrastructure)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.agent.capacity import CapacityError, parse_capacity
from services.agent.main import build_backend
from services.agent.backends.simulated import SimulatedBackend
from services.common.settings import Settings


@pytest.mark.parametrize(
    ("text", "slots"),
    [
        ("cpu=4,mem=8g", {"cpu": Decimal(4), "mem": Decimal(8 * 1024**3)}),
        (" cpu = 0.5 , mem = 512MiB ,", {"cpu": Decimal("0.5"), "mem": Decimal(512 * 1024**2)}),
        ("cpu=8,mem=64g,cuda.device=2", {"cpu": Decimal(8), "mem": Decimal(64 * 1024**3), "cuda.device": Decimal(2)}),
    ],
)
def test_parses_capacity(text: str, slots: dict[str, Decimal]) -> None:
    assert parse_capacity(text) == slots


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cpu4,mem=8g", "name=amount"),
        ("cpu=4,mem=", "name=amount"),
        ("cpu=4,mem=8g,gpu=1", "unknown resource slot 'gpu'"),
        ("cpu=-1,mem=8g", "cannot parse amount"),
        ("cpu=4g,mem=8g", "takes no unit"),
        ("cpu=4,cpu=2,mem=1g", "given twice"),
        ("mem=8g", "positive 'cpu' and 'mem'"),
        ("", "positive 'cpu' and 'mem'"),
    ],
)
def test_refuses_bad_capacity_clearly(text: str, message: str) -> None:
    with pytest.raises(CapacityError, match=message) as info:
        parse_capacity(text)
    assert repr(text) in str(info.value)


def test_builds_the_configured_backend() -> None:
    backend = build_backend(Settings(agent_backend="simulated", sim_delay=0.25))
    assert isinstance(backend, SimulatedBackend) and backend.delay == 0.25
    with pytest.raises(ValueError, match="unknown agent backend 'podman'"):
        build_backend(Settings(agent_backend="podman"))
