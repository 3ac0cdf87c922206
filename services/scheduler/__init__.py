"""The scheduler: places pending sessions on agents (first fit for now), one transaction per pass."""
