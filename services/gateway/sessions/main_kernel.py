"""A session's main kernel and its agent: where its code runs and its apps listen (execution, apps)."""

from __future__ import annotations

from contracts.status import SessionStatus
from domain.session import SessionState
from services.gateway.context import Info, caller
from services.gateway.errors import CONFLICT, GatewayError
from services.gateway.sessions.refs import resolve_owned_session

__all__ = ["main_kernel", "owned_session_ref", "running_main_kernel"]


async def owned_session_ref(info: Info, ref: str) -> SessionState:
    """Returns the session a reference (id, unique id prefix or name) means, if the caller may see it."""
    caller(info)
    return await resolve_owned_session(info, ref)


def main_kernel(state: SessionState) -> tuple[str, str]:
    """Returns the session's main kernel and its agent; CONFLICT while it is not placed."""
    for kernel in state.kernels:
        if kernel.cluster_role == "main" and kernel.agent_id is not None:
            return kernel.kernel_id, kernel.agent_id
    raise GatewayError(CONFLICT, f"session {state.id} is {state.status.value}: its main kernel is not placed on an "
                                 "agent yet, so it has no log (nor anything to run in) until it is")


async def running_main_kernel(info: Info, ref: str) -> tuple[SessionState, str, str]:
    """Returns one of the caller's sessions (a reference) with its main kernel and that kernel's agent;
    CONFLICT when the session is not RUNNING."""
    state = await owned_session_ref(info, ref)
    if state.status is not SessionStatus.RUNNING:
        raise GatewayError(CONFLICT, f"session {state.id} is {state.status.value}, not RUNNING")
    return state, *main_kernel(state)
