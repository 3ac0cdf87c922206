"""The gateway's requests to a kernel's agent about runs (``exec.agent.<agent_id>``), answered with ``ExecAccepted``."""

from __future__ import annotations

import msgspec
import nats.errors
from nats.aio.client import Client as Nats

from contracts.execution import ExecAccepted, ExecRequest, exec_subject
from services.gateway.errors import UNAVAILABLE, GatewayError

__all__ = ["AGENT_TIMEOUT", "interruption", "request_agent", "silent_agent"]

AGENT_TIMEOUT = 5.0
"""Seconds an agent has to accept a run or answer a log request."""


async def request_agent(nc: Nats, agent_id: str, request: ExecRequest) -> ExecAccepted:
    """Sends ``request`` to the agent and returns its answer; UNAVAILABLE when it does not answer."""
    try:
        reply = await nc.request(exec_subject(agent_id), msgspec.json.encode(request), timeout=AGENT_TIMEOUT)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        raise GatewayError(UNAVAILABLE, silent_agent(agent_id)) from None
    return msgspec.json.decode(reply.data, type=ExecAccepted)


def silent_agent(agent_id: str) -> str:
    """What an agent that does not answer is told as: the session's detail says whether it is lost."""
    return f"agent {agent_id} did not answer (if it is lost, the session's status detail says so and until when)"


def interruption(kernel_id: str, run_id: str, cancel: bool = False) -> ExecRequest:
    """The request that interrupts run ``run_id`` (``cancel``: its client is gone, its stream ends at once)."""
    return ExecRequest(run_id=run_id, kernel_id=kernel_id, code="", interrupt=True, cancel=cancel)
