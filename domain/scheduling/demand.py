"""What a pending session asks for, in the scaled integers of one pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from contracts.status import ClusterMode
from domain.scheduling.fixedpoint import SlotScale, Sparse, add_sparse
from domain.scheduling.model import PendingSession

__all__ = ["Demand", "demand_of", "floor_of"]


@dataclass(frozen=True, slots=True)
class Demand:
    """A session with its kernels' requests and their sum, ready for the hot loops."""

    session: PendingSession
    kernels: tuple[Sparse, ...]
    total: Sparse

    @property
    def multi_node(self) -> bool:
        """Returns True when each kernel is a placement group of its own."""
        return self.session.cluster_mode is ClusterMode.MULTI_NODE

    def groups(self) -> tuple[Sparse, ...]:
        """Returns the placement groups: one per kernel (multi-node) or the sum (single-node)."""
        return self.kernels if self.multi_node else (self.total,)


def demand_of(session: PendingSession, scale: SlotScale) -> Demand:
    """Returns the demand of ``session``.

    Raises ``ValueError`` for a session without kernels or with a negative amount.
    """
    if not session.kernels:
        raise ValueError(f"session {session.session_id!r} has no kernels")
    for kernel in session.kernels:
        for name, amount in kernel.slots.items():
            if amount < 0:
                raise ValueError(
                    f"session {session.session_id!r}: kernel {kernel.kernel_id!r} asks for {amount} {name}"
                )
    kernels = tuple(scale.sparse(kernel.slots) for kernel in session.kernels)
    total: Sparse = ()
    for request in kernels:
        total = add_sparse(total, request)
    return Demand(session=session, kernels=kernels, total=total)


def floor_of(demands: Iterable[Demand], size: int) -> Sparse:
    """Returns the slot-wise minimum of every placement group of ``demands``.

    Free slots only shrink during a pass, so an agent that cannot hold this floor
    cannot hold any of these requests, now or later in the pass.
    """
    floor: list[int] | None = None
    for demand in demands:
        for request in demand.groups():
            dense = [0] * size
            for index, amount in request:
                dense[index] = amount
            floor = dense if floor is None else [min(a, b) for a, b in zip(floor, dense)]
    if floor is None:
        return ()
    return tuple((i, amount) for i, amount in enumerate(floor) if amount > 0)
