"""Berth read models. Imports ``contracts`` only (not ``domain``, not ``services``)."""
