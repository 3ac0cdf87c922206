"""The scheduler: places pending sessions on agents (planned by domain.scheduling (priority, FIFO/LIFO/DRF, strategies, gang), recorded in one transaction), one transaction per pass."""
