"""Health: the `doctor` query (read models against the event store) and the relay-stuck check of `/healthz`."""
