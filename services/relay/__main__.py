"""``python -m services.relay``: runs the relay from BERTH_* settings."""

from services.relay.main import main

main()
