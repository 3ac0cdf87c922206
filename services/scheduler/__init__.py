"""The scheduler: places pending sessions on agents, planned by domain.scheduling (priority, FIFO/LIFO/DRF, agent strategies, gang placement), one transaction per pass."""
