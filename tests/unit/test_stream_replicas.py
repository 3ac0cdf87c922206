"""BERTH_STREAM_REPLICAS: the replicas of Berth's streams and buckets (3 on a 3-node NATS cluster)."""

from __future__ import annotations

import pytest

from services.common.bus import REPLICAS_ENV, stream_replicas


def test_one_replica_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REPLICAS_ENV, raising=False)
    assert stream_replicas() == 1


def test_three_replicas_for_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REPLICAS_ENV, "3")
    assert stream_replicas() == 3


@pytest.mark.parametrize("value", ["0", "6", "-1", "three", "1.5"])
def test_anything_else_is_refused_clearly(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(REPLICAS_ENV, value)
    with pytest.raises(ValueError, match="BERTH_STREAM_REPLICAS must be a whole number from 1 to 5"):
        stream_replicas()
