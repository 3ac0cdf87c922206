"""The read side's query functions: the only SQL over the read models outside the projector.

Each function takes the psycopg async pool its caller holds (``psycopg_pool.AsyncConnectionPool``)
and returns typed rows (``rows.py``, msgspec Structs) or plain values; every value is a
parameter, every list bounded or keyed as the caller asks. A read model that does not
exist yet raises ``ReadModelsMissingError``.

| module | reads |
|---|---|
| `sessions.py` | sessions (pages, one, pending of an owner), kernels, agents, the event log |
| `tenancy.py` | domains, projects, users, keypairs, resource policies, resource groups within a `TenancyScope` |
| `usage.py` | quota usage next to each scope's limit |
| `vfolders.py` | folders within a `FolderScope`, invitations, owned count, storage usage and limits per quota scope |
| `mounts.py` | a user's folders that mount by themselves (ready, named `.something`); the live sessions mounting a folder |
| `health.py` | the doctor's consistent snapshot of sessions, kernels, agents and quota usage |
"""

from projections.queries.fetch import ReadModelsMissingError

__all__ = ["ReadModelsMissingError"]
