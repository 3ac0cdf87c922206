"""The aggregates whose histories grow with the platform's age, in one place for every use case.

An agent, a quota scope (keypair, project, domain: one ``QuotaConsumed`` per scheduling pass and one
``QuotaReleased`` per session, for years), a tenancy aggregate and a folder are loaded from their
latest snapshot, and snapshotted as they grow (``services.common.snapshots``), by whichever
application loads them: one set, so that no application can load one of them from its first event
because its own list forgot it (quota scopes were in none). A session's few events need no snapshot.
"""

from __future__ import annotations

from domain import agent, quota, tenancy
from domain.vfolder import evolve as vfolder_evolve

__all__ = ["LONG_LIVED"]

LONG_LIVED = frozenset({agent.evolve, quota.evolve, tenancy.evolve, vfolder_evolve})
"""The ``evolve`` functions of long-lived aggregates (``BerthApplication.long_lived`` of every use case)."""
