"""A subscription whose fetches are carried out concurrently (``concurrent_by``): how it is declared."""

from __future__ import annotations

from decimal import Decimal

import pytest

from contracts import agent as ev
from contracts import commands as c
from contracts.status import Reason
from domain import agent as agent_domain
from services.application.context import make_context
from contracts.subjects import EVENTS_STREAM
from services.agent.flow import KERNELS, kernel_lane
from services.common.flow import Subscription, skip


def test_concurrent_lanes_need_a_batch_to_share_out() -> None:
    with pytest.raises(ValueError, match="concurrent_by needs a batch"):
        Subscription(name="x", stream=EVENTS_STREAM, durable=True, routes={ev.KernelAssigned: skip},
                     concurrent_by=kernel_lane)


def test_concurrent_lanes_let_a_batch_have_a_handler_per_class() -> None:
    Subscription(name="x", stream=EVENTS_STREAM, durable=True, batch=4, concurrent_by=kernel_lane,
                 routes={ev.KernelAssigned: skip, ev.AgentLost: lambda *_, **__: None})
    with pytest.raises(ValueError, match="one handler"):
        Subscription(name="x", stream=EVENTS_STREAM, durable=True, batch=4,
                     routes={ev.KernelAssigned: skip, ev.AgentLost: lambda *_, **__: None})


def test_the_agent_carries_out_its_kernels_in_one_lane_each() -> None:
    assert KERNELS.batch > 1 and KERNELS.concurrent_by is kernel_lane
    ctx = make_context("test")
    (registered,) = agent_domain.decide(None, c.RegisterAgent(capacity={"cpu": Decimal(4)}, backend="simulated",
                                                              hostname="h"), ctx, "a1")
    state = agent_domain.evolve(None, registered)
    (assigned,) = agent_domain.decide(state, c.AssignKernel(kernel_id="k1", session_id="s1", image="img",
                                                            slots={"cpu": Decimal(1)}), ctx, "a1")
    state = agent_domain.evolve(state, assigned)
    (termination,) = agent_domain.decide(state, c.RequestKernelTermination(kernel_id="k1",
                                                                           reason=Reason.USER_REQUESTED), ctx, "a1")
    assert kernel_lane(assigned) == kernel_lane(termination) == "k1"
    assert kernel_lane(registered) is None
