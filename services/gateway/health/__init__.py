"""Health: the `doctor` query (read models against the event store) the relay-stuck check and the services' outages of `/healthz`."""
