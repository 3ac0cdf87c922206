"""``python -m services.gateway``: runs the gateway from ``BERTH_*`` settings."""

from services.gateway.main import main

main()
