"""The projector: applies the EVENTS stream to the read models in PostgreSQL."""
