"""The kernel runner's output rate (``berth_output.Output``), with a clock the test moves: pure."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

RUNNER_DIR = Path(__file__).resolve().parents[2] / "services" / "agent" / "runner"


@pytest.fixture(scope="module")
def berth_output() -> ModuleType:
    sys.path.insert(0, str(RUNNER_DIR))  # the runner is stdlib only, its modules side by side
    try:
        return importlib.import_module("berth_output")
    finally:
        sys.path.remove(str(RUNNER_DIR))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_one_second_goes_at_once_then_the_rate_is_kept(berth_output: ModuleType) -> None:
    sent: list[dict] = []
    clock = Clock()
    output = berth_output.Output(sent.append, "r", rate=1000, clock=clock)
    assert output.wait() == 0.0
    output.feed("stdout", b"x" * 1500)  # a read may overshoot the allowance: paid back
    assert output.wait() == pytest.approx(0.501)
    clock.now += 0.25
    assert output.wait() == pytest.approx(0.251)
    clock.now += 0.3
    assert output.wait() == 0.0
    assert "".join(message["data"] for message in sent) == "x" * 1500


def test_an_idle_run_saves_no_more_than_one_second(berth_output: ModuleType) -> None:
    clock = Clock()
    output = berth_output.Output(lambda message: None, "r", rate=1000, clock=clock)
    clock.now += 3600
    output.feed("stdout", b"x" * 1000)
    assert output.wait() == pytest.approx(0.001)


def test_utf8_split_across_reads_is_sent_whole(berth_output: ModuleType) -> None:
    sent: list[dict] = []
    output = berth_output.Output(sent.append, "r", rate=1000, clock=Clock())
    encoded = "é".encode()
    output.feed("stderr", encoded[:1])
    output.feed("stderr", encoded[1:])
    assert sent == [{"run_id": "r", "kind": "stderr", "data": "é"}]


def test_a_rate_must_be_positive(berth_output: ModuleType) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        berth_output.Output(lambda message: None, "r", rate=0)
