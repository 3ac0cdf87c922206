"""The ``berth`` command: a thin client of the GraphQL gateway (plus ``berth up``)."""
