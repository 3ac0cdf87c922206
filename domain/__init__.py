"""Berth domain: pure state, evolve and decide functions. Imports only ``contracts``; no I/O."""
